//! "Did you mean …?" for a rejected enumerated value: the accepted value
//! closest to it by edit distance (the one place this crate measures one).

/// The optimal-string-alignment distance between `a` and `b`, ASCII case
/// ignored: insertions, deletions, substitutions and swaps of two neighbours
/// (`gprc` → `grpc`) cost one each.
fn distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().map(|c| c.to_ascii_lowercase()).collect();
    let b: Vec<char> = b.chars().map(|c| c.to_ascii_lowercase()).collect();
    // Three rows of the dynamic-programming table: two back (for swaps), the
    // previous one and the current one.
    let mut before: Vec<usize> = vec![0; b.len() + 1];
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for i in 1..=a.len() {
        cur[0] = i;
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut d = (prev[j] + 1).min(cur[j - 1] + 1).min(prev[j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d = d.min(before[j - 2] + 1);
            }
            cur[j] = d;
        }
        std::mem::swap(&mut before, &mut prev);
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

/// The candidate `value` was most likely meant as: the nearest one within a
/// third of its length in edits (at least one edit, and fewer edits than
/// `value` has characters: `x` is no more `s` than `h`), else the first
/// candidate that `value` (three characters or more) begins (`http` →
/// `http/protobuf`). `None` when nothing is that close: a far guess misleads
/// more than none.
pub(crate) fn closest<'a>(value: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let value = value.trim();
    let len = value.chars().count();
    let near = candidates
        .iter()
        .map(|c| (distance(value, c), *c))
        .filter(|(d, c)| *d > 0 && *d < len && *d <= (c.chars().count() / 3).max(1))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c);
    near.or_else(|| {
        let lower = value.to_ascii_lowercase();
        (len >= 3)
            .then(|| {
                candidates
                    .iter()
                    .find(|c| c.starts_with(&lower) && **c != lower)
            })
            .flatten()
            .copied()
    })
}

/// `"; did you mean grpc?"` when a candidate is close to `value` (see
/// [`closest`]), else nothing: for the end of a warning's reason.
pub(crate) fn did_you_mean(value: &str, candidates: &[&str]) -> String {
    closest(value, candidates)
        .map(|c| format!("; did you mean {c}?"))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances() {
        assert_eq!(distance("grpc", "grpc"), 0);
        assert_eq!(distance("GRPC", "grpc"), 0, "case is ignored");
        assert_eq!(distance("gprc", "grpc"), 1, "a swap is one edit");
        assert_eq!(distance("http/protobuff", "http/protobuf"), 1);
        assert_eq!(distance("", "none"), 4);
        assert_eq!(distance("kitten", "sitting"), 3);
        assert_eq!(distance("ca", "abc"), 3, "OSA: no edit of a swapped pair");
    }

    #[test]
    fn only_close_candidates_are_suggested() {
        let protocols = ["grpc", "http/protobuf", "http/json"];
        assert_eq!(closest("gprc", &protocols), Some("grpc"));
        assert_eq!(closest("grcp", &protocols), Some("grpc"));
        assert_eq!(closest("http/protobuff", &protocols), Some("http/protobuf"));
        assert_eq!(closest("http/jsn", &protocols), Some("http/json"));
        assert_eq!(
            closest("http", &protocols),
            Some("http/protobuf"),
            "a prefix"
        );
        assert_eq!(closest("thrift", &protocols), None);
        assert_eq!(closest("g", &protocols), None);
        assert_eq!(closest("grpc", &protocols), None, "accepted already");
        assert_eq!(closest("", &protocols), None);
        let modes = ["app", "request", "manual"];
        assert_eq!(closest("ap", &modes), Some("app"));
        assert_eq!(closest("desktop", &modes), None);
        assert_eq!(closest("x", &modes), None);
        assert_eq!(
            closest("x", &["ms", "s", "m", "h"]),
            None,
            "one letter: no guess"
        );
        assert_eq!(closest("yes", &["true", "false"]), None);
        assert_eq!(closest("1", &["true", "false"]), None);
        assert_eq!(
            did_you_mean("flase", &["true", "false"]),
            "; did you mean false?"
        );
        assert_eq!(did_you_mean("on", &["true", "false"]), "");
    }
}
