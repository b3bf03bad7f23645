//! Session attributes in the persistence file (format version 4): each one
//! as its key, how long it lives and its typed value; read back with the
//! same checks the verbs make (a file that breaks them is damaged).

use opentelemetry::{Array, Key, StringValue, Value};
use serde::{Deserialize, Serialize};

use crate::model::attributes::{
    check, Attributes, Entry, Kind, FEATURE_FLAG_PREFIX, MAX_SESSION_ATTRIBUTES,
};

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AttributeV4 {
    key: String,
    kind: String,
    value: ValueV4,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum ValueV4 {
    String(String),
    Bool(bool),
    Int(i64),
    Double(f64),
    Strings(Vec<String>),
    Bools(Vec<bool>),
    Ints(Vec<i64>),
    Doubles(Vec<f64>),
}

fn value_to(v: &Value) -> ValueV4 {
    match v {
        Value::Bool(b) => ValueV4::Bool(*b),
        Value::I64(i) => ValueV4::Int(*i),
        Value::F64(f) => ValueV4::Double(*f),
        Value::Array(Array::Bool(a)) => ValueV4::Bools(a.clone()),
        Value::Array(Array::I64(a)) => ValueV4::Ints(a.clone()),
        Value::Array(Array::F64(a)) => ValueV4::Doubles(a.clone()),
        Value::Array(Array::String(a)) => {
            ValueV4::Strings(a.iter().map(|s| s.as_str().to_string()).collect())
        }
        other => ValueV4::String(other.as_str().into_owned()),
    }
}

fn value_from(v: ValueV4) -> Value {
    match v {
        ValueV4::String(s) => Value::from(s),
        ValueV4::Bool(b) => Value::Bool(b),
        ValueV4::Int(i) => Value::I64(i),
        ValueV4::Double(f) => Value::F64(f),
        ValueV4::Strings(a) => Value::Array(Array::String(
            a.into_iter().map(StringValue::from).collect(),
        )),
        ValueV4::Bools(a) => Value::Array(Array::Bool(a)),
        ValueV4::Ints(a) => Value::Array(Array::I64(a)),
        ValueV4::Doubles(a) => Value::Array(Array::F64(a)),
    }
}

pub(super) fn to_v4(a: &Attributes) -> Vec<AttributeV4> {
    a.entries()
        .iter()
        .map(|e| AttributeV4 {
            key: e.key.to_string(),
            kind: match e.kind {
                Kind::Session => "session",
                Kind::Permanent => "permanent",
                Kind::Flag => "flag",
            }
            .to_string(),
            value: value_to(&e.value),
        })
        .collect()
}

pub(super) fn from_v4(list: Vec<AttributeV4>) -> Result<Attributes, String> {
    if list.len() > MAX_SESSION_ATTRIBUTES {
        return Err(format!(
            "{} session attributes (at most {MAX_SESSION_ATTRIBUTES})",
            list.len()
        ));
    }
    let mut out = Attributes::default();
    for a in list {
        let kind = match a.kind.as_str() {
            "session" => Kind::Session,
            "permanent" => Kind::Permanent,
            "flag" => Kind::Flag,
            other => return Err(format!("unknown attribute kind {other:?}")),
        };
        let value = value_from(a.value);
        let checked = match kind {
            Kind::Flag => match a.key.strip_prefix(FEATURE_FLAG_PREFIX) {
                Some(name) => crate::model::attributes::flag_key(name).map(|_| ()),
                None => Err(crate::model::attributes::AttributeError::EmptyKey),
            },
            _ => check(&a.key, Some(&value)),
        };
        checked.map_err(|e| format!("a session attribute is not valid: {e}"))?;
        out.set(Entry {
            key: Key::from(a.key),
            value,
            kind,
        })
        .map_err(|e| e.to_string())?;
    }
    Ok(out)
}
