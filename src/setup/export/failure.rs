//! What went wrong with an export, classified from typed data where the
//! libraries give it: the HTTP status our client saw, the `io::ErrorKind` in a
//! transport error's chain, reqwest's timeout. Text is read only where there is
//! no type to look at (see [`Failure::of_text`]). Whether `opentelemetry-otlp`
//! retries a failure ([`Failure::retryable`]) and whether retrying can fix it
//! ([`Failure::heals`]) are decided here too.

// HTTP statuses and pages are seen by the HTTP client only.
#![cfg_attr(not(feature = "otlp-http"), allow(dead_code))]

use super::observe::{error_chain, inner_or_source, ProxyPage};

/// What went wrong with a TLS handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsProblem {
    /// The server's certificate chain does not lead to a trusted root.
    Untrusted,
    /// The certificate is not valid for the host name in the endpoint.
    WrongName,
    /// The certificate has expired or is not valid yet.
    Expired,
    /// The server wants a client certificate (mutual TLS), or refused ours.
    ClientCertificate,
    /// The server does not speak TLS on that port.
    NotTls,
    /// The endpoint says `http://` but the server expects TLS.
    PlainToTls,
    /// Another TLS failure.
    Other,
}

/// What went wrong with an export, as far as the error tells.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The connection was refused: nothing listens there.
    Refused,
    /// The host name could not be resolved.
    Unresolved,
    /// No answer within the export timeout.
    TimedOut,
    /// Still under way (an attempt, or waits between them) when the shutdown
    /// deadline came.
    ShutDown,
    /// The TLS handshake failed.
    Tls(TlsProblem),
    /// The server answered with this HTTP status.
    Status(u16),
    /// The server answered with this gRPC status code (as `tonic` names it:
    /// `opentelemetry-otlp` gives the code as text only).
    Grpc(String),
    /// The server spoke another protocol (HTTP/1.1 against HTTP/2 or the reverse).
    Protocol,
    /// The connection was closed or reset mid-request (a collector restarting).
    Disconnected,
    /// Another transport error: no answer was received.
    Network,
    /// Anything else (the export could not even be attempted, an unknown answer).
    Other,
}

/// Words in an error's text and the failure they mean, the first match
/// winning (so the TLS problems before TLS in general, and both before a
/// timeout a handshake may also mention).
const TEXT_CLUES: &[(&[&str], Failure)] = &[
    (
        &["unknownissuer", "unknown issuer", "badsignature"],
        Failure::Tls(TlsProblem::Untrusted),
    ),
    (
        &["notvalidforname", "not valid for name"],
        Failure::Tls(TlsProblem::WrongName),
    ),
    (
        &[
            "certificate: expired",
            "certificate expired",
            "expiredcontext",
            "notvalidyet",
            "not valid yet",
        ],
        Failure::Tls(TlsProblem::Expired),
    ),
    (
        &[
            "certificaterequired",
            "certificate required",
            "badcertificate",
            "bad certificate",
            "certificateunknown",
            "unknownca",
            "unknown ca",
        ],
        Failure::Tls(TlsProblem::ClientCertificate),
    ),
    (
        &[
            "corrupt message",
            "invalidcontenttype",
            "wrong version number",
            "invalid content type",
        ],
        Failure::Tls(TlsProblem::NotTls),
    ),
    (&["connection refused"], Failure::Refused),
    (
        &[
            "dns error",
            "failed to lookup address",
            "name or service not known",
            "nodename nor servname",
            "no such host",
        ],
        Failure::Unresolved,
    ),
    (
        &["tls", "certificate", "handshake", "alert"],
        Failure::Tls(TlsProblem::Other),
    ),
    (&["timed out", "timeout", "deadline"], Failure::TimedOut),
    (
        &[
            "http2 error",
            "h2 protocol error",
            "frame with invalid size",
            "invalid http version",
            "received an unexpected",
            "received unexpected message",
            "invalid status line",
        ],
        Failure::Protocol,
    ),
    (
        &[
            "connection closed before message completed",
            "unexpected end of file",
            "connection reset",
            "broken pipe",
            "connection closed",
        ],
        Failure::Disconnected,
    ),
];

impl Failure {
    /// What an HTTP response with `status` means (a TLS proxy's error `page`
    /// says more than its status).
    pub fn of_response(status: u16, page: Option<ProxyPage>) -> Failure {
        match page {
            Some(ProxyPage::ClientCertificate) => Failure::Tls(TlsProblem::ClientCertificate),
            Some(ProxyPage::PlainHttpToTls) => Failure::Tls(TlsProblem::PlainToTls),
            None => Failure::Status(status),
        }
    }

    /// Classifies a transport error (what our HTTP client or gRPC connector
    /// got) from its types
    /// where it has them: the `io::ErrorKind` anywhere in its chain, reqwest's
    /// timeout. The rest has no type we can see (rustls' errors, as we do not
    /// depend on rustls; the resolver's; hyper's protocol errors): it is read
    /// from the chain's text, [`of_text`](Self::of_text).
    pub fn of_transport_error(error: &(dyn std::error::Error + 'static)) -> Failure {
        use std::io::ErrorKind as K;
        let mut next = Some(error);
        while let Some(e) = next {
            if let Some(io) = e.downcast_ref::<std::io::Error>() {
                match io.kind() {
                    K::ConnectionRefused => return Failure::Refused,
                    K::TimedOut => return Failure::TimedOut,
                    K::ConnectionReset | K::ConnectionAborted | K::BrokenPipe => {
                        return Failure::Disconnected
                    }
                    _ => {}
                }
            }
            #[cfg(feature = "otlp-http")]
            if e.downcast_ref::<reqwest::Error>()
                .is_some_and(reqwest::Error::is_timeout)
            {
                return Failure::TimedOut;
            }
            next = inner_or_source(e);
        }
        match Failure::of_text(&error_chain(error)) {
            Failure::Other => Failure::Network,
            known => known,
        }
    }

    /// Classifies an error from its text. Only for what has no type to look
    /// at: `opentelemetry-otlp` returns its errors as text
    /// (`OTelSdkError::InternalFailure`: over gRPC, the status code's name and
    /// the transport error's chain), and parts of a transport error have no
    /// type we can reach (see [`of_transport_error`](Self::of_transport_error)).
    pub fn of_text(error: &str) -> Failure {
        let text = error.to_ascii_lowercase();
        if let Some((_, failure)) = TEXT_CLUES
            .iter()
            .find(|(words, _)| words.iter().any(|w| text.contains(w)))
        {
            return failure.clone();
        }
        match grpc_code(error) {
            Some(code) => Failure::Grpc(code),
            None => Failure::Other,
        }
    }

    /// Whether `opentelemetry-otlp` retries this failure (the OTLP
    /// specification's transient failures): a transport error, HTTP 429, 502,
    /// 503, 504, gRPC `UNAVAILABLE`, `CANCELLED`, `DEADLINE_EXCEEDED`, `ABORTED`,
    /// `OUT_OF_RANGE`, `DATA_LOSS`. gRPC `RESOURCE_EXHAUSTED` is retried only
    /// when the server sends `RetryInfo`, which its error text does not show:
    /// whether it was retried shows in the attempts made. Everything else is
    /// permanent: another status, malformed data, refused credentials; a TLS
    /// verification failure and a protocol mismatch end the export at once
    /// (see [`heals`](Self::heals)).
    pub fn retryable(&self) -> bool {
        match self {
            Failure::Refused
            | Failure::Unresolved
            | Failure::TimedOut
            | Failure::ShutDown
            | Failure::Disconnected
            | Failure::Network
            | Failure::Tls(TlsProblem::Other) => true,
            Failure::Status(s) => matches!(s, 429 | 502 | 503 | 504),
            Failure::Grpc(code) => matches!(
                code.as_str(),
                "Unavailable"
                    | "Cancelled"
                    | "DeadlineExceeded"
                    | "Aborted"
                    | "OutOfRange"
                    | "DataLoss"
            ),
            Failure::Tls(_) | Failure::Protocol | Failure::Other => false,
        }
    }

    /// Whether retrying can fix it: not a TLS verification failure or a
    /// protocol mismatch (which `opentelemetry-otlp` retries over HTTP like any
    /// transport error).
    pub fn heals(&self) -> bool {
        !matches!(self, Failure::Protocol)
            && !matches!(self, Failure::Tls(p) if *p != TlsProblem::Other)
    }

    /// Whether nothing could be reached: a refused connection, an unknown host.
    pub fn unreachable(&self) -> bool {
        matches!(self, Failure::Refused | Failure::Unresolved)
    }
}

/// `Unavailable` from "... export failed with gRPC code: Unavailable: ...": the
/// name of the `tonic::Code` as `opentelemetry-otlp` prints it (`{:?}`), the
/// only form in which its errors carry the code.
fn grpc_code(error: &str) -> Option<String> {
    let rest = error.split_once("gRPC code: ")?.1;
    let code: String = rest.chars().take_while(char::is_ascii_alphabetic).collect();
    (!code.is_empty()).then_some(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transport_errors_are_classified_from_their_types_first() {
        use std::io::{Error, ErrorKind};
        // The text says nothing; the kind does.
        // Wrapped, as in reqwest's and hyper's chains.
        let refused = Error::other(Error::new(ErrorKind::ConnectionRefused, "os error 111"));
        assert_eq!(Failure::of_transport_error(&refused), Failure::Refused);
        let reset = Error::other(Error::from(ErrorKind::ConnectionReset));
        assert_eq!(Failure::of_transport_error(&reset), Failure::Disconnected);
        // rustls' errors have no type we can see: their text.
        let untrusted = "invalid peer certificate: UnknownIssuer";
        let tls = Error::other(Error::new(ErrorKind::InvalidData, untrusted));
        assert_eq!(
            Failure::of_transport_error(&tls),
            Failure::Tls(TlsProblem::Untrusted)
        );
        let other = Error::other(Error::other("something new"));
        assert_eq!(Failure::of_transport_error(&other), Failure::Network);
    }
}
