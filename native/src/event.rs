//! The common usage event read without Python's JSON objects: `streamer.core.events.python_parse_event`
//! is the reference.
//!
//! Only the shape nearly every event has is read here: a JSON object of the native fields (`event_id`,
//! `account_id`, `event`, `timestamp`, `user_id`, `properties`, `active`, `kind`), each at most once,
//! an activity with no properties. Anything else (another field, a property, a fact, a value of
//! another type, a value the reference would reject, JSON the parser refuses) is declined: the parser
//! returns None and the reference reads the event, with its own error where it is invalid.

use std::borrow::Cow;
use std::fmt;

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString, PyTuple};
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, Visitor};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Key {
    EventId,
    AccountId,
    Event,
    Timestamp,
    UserId,
    Properties,
    Active,
    Kind,
}

struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Key;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Key, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed {
    type Value = Key;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a field of a native event")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Key, E> {
        Ok(match v {
            "event_id" => Key::EventId,
            "account_id" => Key::AccountId,
            "event" => Key::Event,
            "timestamp" => Key::Timestamp,
            "user_id" => Key::UserId,
            "properties" => Key::Properties,
            "active" => Key::Active,
            "kind" => Key::Kind,
            _ => return Err(E::custom("another field")),
        })
    }
}

/// A field's value: the JSON scalars the native shape has, or an empty object.
enum Value<'a> {
    Str(Cow<'a, str>),
    Int(i64),
    Bool(bool),
    Null,
    EmptyObject,
}

struct ValueSeed;

impl<'de> DeserializeSeed<'de> for ValueSeed {
    type Value = Value<'de>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value<'de>, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ValueSeed {
    type Value = Value<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string, an integer, a boolean, null or {}")
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Value<'de>, E> {
        Ok(Value::Str(Cow::Borrowed(v)))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value<'de>, E> {
        Ok(Value::Str(Cow::Owned(v.to_owned())))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Value<'de>, E> {
        Ok(Value::Str(Cow::Owned(v)))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value<'de>, E> {
        Ok(Value::Int(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value<'de>, E> {
        i64::try_from(v)
            .map(Value::Int)
            .map_err(|_| E::custom("out of the timestamp's range"))
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value<'de>, E> {
        Ok(Value::Bool(v))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value<'de>, E> {
        Ok(Value::Null)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value<'de>, A::Error> {
        match map.next_key::<de::IgnoredAny>()? {
            None => Ok(Value::EmptyObject),
            Some(_) => Err(de::Error::custom("a property")),
        }
    }
}

/// The fields of a native event, each at most once.
#[derive(Default)]
struct Fields<'a> {
    values: [Option<Value<'a>>; 8],
}

impl<'de> Visitor<'de> for Fields<'de> {
    type Value = Fields<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a native event")
    }

    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<Fields<'de>, A::Error> {
        while let Some(key) = map.next_key_seed(KeySeed)? {
            let slot = &mut self.values[key as usize];
            if slot.is_some() {
                return Err(de::Error::custom("a field given twice"));
            }
            *slot = Some(map.next_value_seed(ValueSeed)?);
        }
        Ok(self)
    }
}

fn read(raw: &[u8]) -> Result<Fields<'_>, serde_json::Error> {
    let mut d = serde_json::Deserializer::from_slice(raw);
    let fields = d.deserialize_map(Fields::default())?;
    d.end()?;
    Ok(fields)
}

/// Parses the common shape of a usage event into `UsageEvent`; see the module's documentation.
#[pyclass(frozen, module = "churnwatch_native")]
pub struct EventParser {
    usage_event: Py<PyAny>,
    activity: Py<PyAny>,
    reserved: Vec<String>, // event names that mean a fact, not an activity
    max_len: usize,
    max_bytes: usize,
    min_ms: i64,
    max_ms: i64,
}

impl EventParser {
    /// A string of 1..=max_len characters (the reference's `_checked_str`).
    fn text<'a>(&self, v: &'a Option<Value<'a>>) -> Option<&'a str> {
        match v {
            Some(Value::Str(s)) if !s.is_empty() && s.chars().count() <= self.max_len => Some(s),
            _ => None,
        }
    }
}

#[pymethods]
impl EventParser {
    /// `EventParser(UsageEvent, EventKind.ACTIVITY, reserved_names, max_len, max_bytes, min_ms, max_ms)`.
    #[new]
    fn new(
        usage_event: Py<PyAny>,
        activity: Py<PyAny>,
        reserved: Vec<String>,
        max_len: usize,
        max_bytes: usize,
        min_ms: i64,
        max_ms: i64,
    ) -> Self {
        EventParser {
            usage_event,
            activity,
            reserved,
            max_len,
            max_bytes,
            min_ms,
            max_ms,
        }
    }

    /// The event in `raw` (JSON bytes) as the reference reads it, or None where it declines.
    fn parse<'py>(&self, py: Python<'py>, raw: &[u8]) -> PyResult<Option<Bound<'py, PyAny>>> {
        if raw.len() > self.max_bytes {
            return Ok(None);
        }
        let Ok(Fields { values: v }) = read(raw) else {
            return Ok(None);
        };
        let field = |k: Key| &v[k as usize];
        let (Some(event_id), Some(account_id), Some(name)) = (
            self.text(field(Key::EventId)),
            self.text(field(Key::AccountId)),
            self.text(field(Key::Event)),
        ) else {
            return Ok(None);
        };
        let ms = match field(Key::Timestamp) {
            Some(Value::Int(ms)) => *ms,
            Some(Value::Str(s)) => match crate::rfc3339(s.as_bytes()) {
                Some(ms) => ms,
                None => return Ok(None),
            },
            _ => return Ok(None),
        };
        if !(self.min_ms <= ms && ms < self.max_ms) {
            return Ok(None);
        }
        let user_id = match field(Key::UserId) {
            None | Some(Value::Null) => None,
            user => match self.text(user) {
                Some(user) => Some(user),
                None => return Ok(None),
            },
        };
        if !matches!(
            field(Key::Properties),
            None | Some(Value::Null) | Some(Value::EmptyObject)
        ) {
            return Ok(None);
        }
        let active = match field(Key::Active) {
            None => true,
            Some(Value::Bool(b)) => *b,
            _ => return Ok(None),
        };
        // An activity: no kind and a name that is not a fact's, or the kind "activity".
        match field(Key::Kind) {
            None if !self.reserved.iter().any(|r| r == name) => {}
            Some(Value::Str(kind)) if kind == "activity" => {}
            _ => return Ok(None),
        }
        let user_id = match user_id {
            Some(user) => PyString::new(py, user).into_any(),
            None => py.None().into_bound(py),
        };
        let args = PyTuple::new(
            py,
            [
                PyString::new(py, event_id).into_any(),
                PyString::new(py, account_id).into_any(),
                PyString::new(py, name).into_any(),
                ms.into_pyobject(py)?.into_any(),
                user_id,
                PyDict::new(py).into_any(),
                active.into_pyobject(py)?.to_owned().into_any(),
                self.activity.bind(py).clone(),
            ],
        )?;
        self.usage_event.bind(py).call1(args).map(Some)
    }
}
