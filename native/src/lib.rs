//! The compiled parts of the worker's per-event path: the account state's binary codec (version 6), the
//! common usage event's parser (event.rs), timestamps, id hashes, an account's rhythm, the drop tests'
//! tail probability, the top users' count and Kafka's murmur2 partitioner. Each has a Python reference
//! (`python_…` in `streamer/core`) it is held to.
//!
//! The format and the reference implementation are `streamer/core/state.py`: `encode_state` and
//! `decode_state` there are the readable definition, and this module must produce the same bytes and
//! the same objects (tests/unit/test_native_codec.py holds the two to each other on random states).
//! Only the current version is decoded here; older states go to the Python decoder.

mod event;

use pyo3::exceptions::{PyOverflowError, PyValueError};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyFloat, PyList, PyString, PyTuple, PyType};
use pyo3::IntoPyObjectExt;

const VERSION: u8 = 6;
const NONE: i64 = i64::MIN; // an absent int64 timestamp
const NO_DAY: i32 = i32::MIN;
const STR_NONE: u16 = 0xFFFF;
const COMPONENTS: usize = 7; // COMPONENT_NAMES
const PARTS: usize = 32; // a scored day's parts: 4 bytes per SCORED_COMPONENTS
const HEADER: usize = 163;

/// AccountState's fields in their declared order: decode builds the state with one positional call.
const FIELDS: [&str; 49] = [
    "account_id",
    "first_seen_ms",
    "clock_ms",
    "last_activity_ms",
    "days",
    "seats",
    "plan",
    "segment",
    "name",
    "owner",
    "arr",
    "currency",
    "renewal_ms",
    "contract",
    "facts_at_ms",
    "nps_score",
    "nps_at_ms",
    "open_tickets",
    "subscription_started_ms",
    "subscription_cancelled_ms",
    "recent_ids",
    "applied_offset",
    "quiet_since_ms",
    "drop_since_ms",
    "poor_open",
    "unpublished",
    "last_band",
    "published_score",
    "published_band",
    "published_components",
    "due_ms",
    "top_users",
    "key_user",
    "key_since_ms",
    "drop_pending_day",
    "drop_base",
    "drop_dispersion",
    "poor_pending_ms",
    "published_activity_ms",
    "published_quiet_since_ms",
    "published_drop_since_ms",
    "published_poor",
    "history",
    "history_through",
    "scored",
    "first_activity_ms",
    "milestones",
    "published_milestones",
    "quiet_cache",
];

const FACT_STRINGS: [&str; 4] = ["plan", "segment", "name", "owner"];
const REVENUE_FACTS: [&str; 4] = ["arr", "currency", "renewal_at", "contract"];

/// What the check and the encoder say of a ring of recent ids whose length is not a multiple of 8.
const RING_NOT_WHOLE: &str = "state field recent_ids is not whole 8-byte ids";

fn corrupt(what: &str) -> PyErr {
    PyValueError::new_err(format!("corrupt state: {what}"))
}

/// A `Reader` method per number type: the next `size_of::<T>()` bytes, little endian.
macro_rules! little_endian {
    ($($t:ident),*) => {
        $(fn $t(&mut self) -> PyResult<$t> {
            Ok($t::from_le_bytes(self.arr()?))
        })*
    };
}

/// Reads the encoding front to back; every read is bounds-checked.
struct Reader<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> PyResult<&'a [u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.b.len())
            .ok_or_else(|| corrupt("truncated"))?;
        let out = &self.b[self.pos..end];
        self.pos = end;
        Ok(out)
    }
    fn arr<const N: usize>(&mut self) -> PyResult<[u8; N]> {
        Ok(self.take(N)?.try_into().expect("length checked"))
    }
    little_endian!(u8, i8, u16, i16, i32, u32, i64, u64, f64);
    /// A uint16 length and UTF-8, or the absent marker.
    fn string(&mut self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        let n = self.u16()?;
        if n == STR_NONE {
            return Ok(None);
        }
        let raw = self.take(n as usize)?;
        let text = std::str::from_utf8(raw).map_err(|e| corrupt(&e.to_string()))?;
        Ok(Some(PyString::new(py, text).into_any().unbind()))
    }
}

/// Writes the encoding; the counterpart of [`Reader`].
struct Writer {
    out: Vec<u8>,
}

impl Writer {
    fn put(&mut self, bytes: &[u8]) {
        self.out.extend_from_slice(bytes);
    }
    fn string(&mut self, value: &Bound<'_, PyAny>) -> PyResult<()> {
        if value.is_none() {
            self.put(&STR_NONE.to_le_bytes());
            return Ok(());
        }
        let text = value.downcast::<PyString>()?.to_str()?;
        if text.len() >= STR_NONE as usize {
            return Err(PyValueError::new_err("string too long to encode"));
        }
        self.put(&(text.len() as u16).to_le_bytes());
        self.put(text.as_bytes());
        Ok(())
    }
}

fn opt_i64(v: &Bound<'_, PyAny>) -> PyResult<i64> {
    if v.is_none() {
        Ok(NONE)
    } else {
        v.extract()
    }
}

fn count_u8(n: usize) -> PyResult<u8> {
    u8::try_from(n).map_err(|_| PyValueError::new_err("bytes must be in range(0, 256)"))
}

/// The state codec, bound to the classes of `streamer.core.state` it reads and builds.
#[pyclass(frozen, module = "churnwatch_native")]
struct Codec {
    state: Py<PyAny>,
    day_bucket: Py<PyType>,
    top_user: Py<PyType>,
    scored: Py<PyType>,
    milestone: Py<PyType>,
    bands: Vec<Py<PyAny>>,
    components: Vec<Py<PyString>>,
    names: Vec<Py<PyString>>, // FIELDS, interned once
}

/// A new instance of the named tuple class `cls` holding `items`, built as `tuple.__new__` builds a tuple
/// subclass's instance (its `tp_alloc`, then the items) without a call to the class's Python `__new__`.
/// [`Codec::new`] checked that `cls` is a named tuple of `N` fields.
fn named_tuple<'py, const N: usize>(
    py: Python<'py>,
    cls: &Bound<'py, PyType>,
    items: [Bound<'py, PyAny>; N],
) -> PyResult<Bound<'py, PyAny>> {
    // SAFETY: `cls` is a subclass of tuple without instance dict (checked in Codec::new), so its
    // tp_alloc returns a tuple-layout object of N empty slots, each filled once with an owned reference.
    unsafe {
        let tp = cls.as_type_ptr();
        let alloc = (*tp).tp_alloc.unwrap_or(pyo3::ffi::PyType_GenericAlloc);
        let obj = alloc(tp, N as pyo3::ffi::Py_ssize_t);
        if obj.is_null() {
            return Err(PyErr::fetch(py));
        }
        for (i, item) in items.into_iter().enumerate() {
            pyo3::ffi::PyTuple_SET_ITEM(obj, i as pyo3::ffi::Py_ssize_t, item.into_ptr());
        }
        Ok(Bound::from_owned_ptr(py, obj))
    }
}

fn check_named_tuple(cls: &Bound<'_, PyType>, fields: usize) -> PyResult<()> {
    // A tuple subclass without instance dict whose __new__ is the one namedtuple generates (it only packs
    // its arguments into the tuple).
    let generated_new = format!("{}.__new__", cls.name()?);
    let ok = cls.is_subclass_of::<PyTuple>()?
        && cls.hasattr("_make")?
        && cls.getattr("_fields")?.len()? == fields
        && cls.getattr("__dictoffset__")?.extract::<isize>()? == 0
        && cls
            .getattr("__new__")?
            .getattr("__qualname__")?
            .extract::<String>()?
            == generated_new;
    if ok {
        Ok(())
    } else {
        Err(PyValueError::new_err(format!(
            "{cls} is not a named tuple of {fields} fields"
        )))
    }
}

impl Codec {
    fn opt<'py>(py: Python<'py>, v: i64) -> PyResult<Bound<'py, PyAny>> {
        if v == NONE {
            Ok(py.None().into_bound(py))
        } else {
            v.into_bound_py_any(py)
        }
    }

    fn band<'py>(&self, py: Python<'py>, index: u8) -> PyResult<Bound<'py, PyAny>> {
        self.bands
            .get(index as usize)
            .map(|b| b.bind(py).clone())
            .ok_or_else(|| corrupt("tuple index out of range"))
    }

    fn band_index(&self, py: Python<'_>, band: &Bound<'_, PyAny>) -> PyResult<u8> {
        for (i, b) in self.bands.iter().enumerate() {
            if b.bind(py).is(band) {
                return Ok(i as u8);
            }
        }
        for (i, b) in self.bands.iter().enumerate() {
            if b.bind(py).eq(band)? {
                return Ok(i as u8);
            }
        }
        Err(PyValueError::new_err("tuple.index(x): x not in tuple"))
    }
}

#[pymethods]
impl Codec {
    /// `Codec(AccountState, DayBucket, TopUser, Scored, MilestoneProgress, bands, component_names, fields)`.
    ///
    /// `fields` are AccountState's field names: the codec refuses a class whose fields it does not know.
    #[new]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        state: Py<PyAny>,
        day_bucket: Py<PyType>,
        top_user: Py<PyType>,
        scored: Py<PyType>,
        milestone: Py<PyType>,
        bands: Vec<Py<PyAny>>,
        components: Vec<Py<PyString>>,
        fields: Vec<String>,
    ) -> PyResult<Self> {
        check_named_tuple(day_bucket.bind(py), 4)?;
        check_named_tuple(top_user.bind(py), 4)?;
        check_named_tuple(scored.bind(py), 3)?;
        check_named_tuple(milestone.bind(py), 4)?;
        if fields != FIELDS {
            return Err(PyValueError::new_err(
                "AccountState's fields are not the ones this codec was built for: rebuild it (make install)",
            ));
        }
        if bands.len() != 4 || components.len() != COMPONENTS {
            return Err(PyValueError::new_err(
                "expected 4 bands (None first) and 7 component names",
            ));
        }
        let names = FIELDS
            .iter()
            .map(|name| PyString::intern(py, name).unbind())
            .collect();
        Ok(Codec {
            state,
            day_bucket,
            top_user,
            scored,
            milestone,
            bands,
            components,
            names,
        })
    }

    /// Deserialise a version 6 state (`decode_state`); ValueError on truncated or corrupt input.
    fn decode<'py>(&self, py: Python<'py>, b: &[u8]) -> PyResult<Bound<'py, PyAny>> {
        if b.first() != Some(&VERSION) {
            return Err(PyValueError::new_err("not a version 6 state"));
        }
        let mut r = Reader { b, pos: 1 };
        let first_seen = r.i64()?;
        let clock = r.i64()?;
        let applied_offset = r.i64()?;
        let last_activity = r.i64()?;
        let nps_at = r.i64()?;
        let nps_score = r.i8()?;
        let open_tickets = r.i32()?;
        let sub_started = r.i64()?;
        let sub_cancelled = r.i64()?;
        let quiet_since = r.i64()?;
        let drop_since = r.i64()?;
        let flags = r.u8()?;
        let last_band = r.u8()?;
        let published_score = r.i16()?;
        let published_band = r.u8()?;
        let mut comps = [0f64; COMPONENTS];
        for c in comps.iter_mut() {
            *c = r.f64()?;
        }
        let seats = r.i64()?;
        let seats_at = r.i64()?;
        let due = r.i64()?;
        debug_assert_eq!(r.pos, HEADER);
        let account_id = r
            .string(py)?
            .ok_or_else(|| PyValueError::new_err("missing account id"))?;

        let facts_at = PyDict::new(py);
        if seats_at != NONE {
            facts_at.set_item(intern!(py, "seats"), seats_at)?;
        }
        let mut strings: Vec<Bound<'py, PyAny>> = Vec::with_capacity(4);
        for key in FACT_STRINGS {
            strings.push(match r.string(py)? {
                Some(s) => s.into_bound(py),
                None => py.None().into_bound(py),
            });
            let at = r.i64()?;
            if at != NONE {
                facts_at.set_item(PyString::intern(py, key), at)?;
            }
        }

        let days = PyDict::new(py);
        let day_bucket = self.day_bucket.bind(py);
        for _ in 0..r.u16()? {
            let day = r.i32()?;
            let events = r.u32()?;
            let weight = r.f64()?;
            let low = r.u64()? as u128;
            let high = r.u64()? as u128;
            let features = r.u64()?;
            let items = [
                events.into_bound_py_any(py)?,
                weight.into_bound_py_any(py)?,
                (low | (high << 64)).into_bound_py_any(py)?,
                features.into_bound_py_any(py)?,
            ];
            let bucket = named_tuple(py, day_bucket, items)?;
            days.set_item(day, bucket)?;
        }
        let n = r.u16()? as usize;
        let raw = r.take(n.checked_mul(8).ok_or_else(|| corrupt("truncated"))?)?;
        let recent_ids = PyBytes::new(py, raw);

        // The extension: key user, pending episodes, the drop test's frozen baseline, what was shown.
        let ext_flags = r.u8()?;
        let key_user = r.u64()?;
        let key_since = r.i64()?;
        let pending = r.i32()?;
        let poor_pending = r.i64()?;
        let dispersion = r.f64()?;
        let mut base = [0f64; 7];
        for v in base.iter_mut() {
            *v = r.f64()?;
        }
        let shown_activity = r.i64()?;
        let shown_quiet = r.i64()?;
        let shown_drop = r.i64()?;

        let top_users = PyList::empty(py);
        let top_user = self.top_user.bind(py);
        for _ in 0..r.u8()? {
            let user = r.u64()?;
            let weight = r.f64()?;
            let last_day = r.i32()?;
            let first_day = r.i32()?;
            let items = [
                user.into_bound_py_any(py)?,
                weight.into_bound_py_any(py)?,
                last_day.into_bound_py_any(py)?,
                first_day.into_bound_py_any(py)?,
            ];
            top_users.append(named_tuple(py, top_user, items)?)?;
        }
        let through = r.i32()?;
        let history = PyList::empty(py);
        for _ in 0..r.u8()? {
            let week = r.i32()?;
            let user_days = r.f64()?;
            let counted = r.u8()?;
            history.append((week, user_days, counted).into_pyobject(py)?)?;
        }

        let arr = r.f64()?;
        let renewal = r.i64()?;
        for key in REVENUE_FACTS {
            let at = r.i64()?;
            if at != NONE {
                facts_at.set_item(PyString::intern(py, key), at)?;
            }
        }
        let currency = r.string(py)?;
        let contract = r.string(py)?;

        let scored = PyList::empty(py);
        let scored_cls = self.scored.bind(py);
        for _ in 0..r.u8()? {
            let day = r.i32()?;
            let score = r.u8()?;
            let parts = PyBytes::new(py, r.take(PARTS)?);
            let items = [
                day.into_bound_py_any(py)?,
                score.into_bound_py_any(py)?,
                parts.into_any(),
            ];
            scored.append(named_tuple(py, scored_cls, items)?)?;
        }

        let first_activity = r.i64()?;
        let published_milestones = r.u16()?;
        let milestones = PyDict::new(py);
        let milestone = self.milestone.bind(py);
        for _ in 0..r.u8()? {
            let key = r.u32()?;
            let reached = r.i64()?;
            let events = r.u16()?;
            let m_flags = r.u8()?;
            let n = r.u8()? as usize;
            let raw = r.take(n * 4)?;
            let users = PyTuple::new(
                py,
                raw.chunks_exact(4)
                    .map(|c| u32::from_le_bytes(c.try_into().expect("4 bytes"))),
            )?;
            let items = [
                Self::opt(py, reached)?,
                events.into_bound_py_any(py)?,
                users.into_any(),
                (m_flags & 1 != 0).into_bound_py_any(py)?,
            ];
            let progress = named_tuple(py, milestone, items)?;
            milestones.set_item(key, progress)?;
        }
        if r.pos != b.len() {
            return Err(PyValueError::new_err("trailing bytes in state"));
        }

        let published = PyDict::new(py);
        for (name, v) in self.components.iter().zip(comps) {
            if !v.is_nan() {
                published.set_item(name.bind(py), v)?;
            }
        }
        let none = || py.None().into_bound(py);
        let drop_base = if base[0].is_nan() {
            PyTuple::empty(py)
        } else {
            PyTuple::new(py, base)?
        };
        let [plan, segment, name, owner]: [Bound<'py, PyAny>; 4] = strings.try_into().expect("four facts");
        let args: [Bound<'py, PyAny>; 49] = [
            account_id.into_bound(py),
            first_seen.into_bound_py_any(py)?,
            clock.into_bound_py_any(py)?,
            Self::opt(py, last_activity)?,
            days.into_any(),
            Self::opt(py, seats)?,
            plan,
            segment,
            name,
            owner,
            if arr.is_nan() {
                none()
            } else {
                arr.into_bound_py_any(py)?
            },
            currency.map_or_else(none, |s| s.into_bound(py)),
            Self::opt(py, renewal)?,
            contract.map_or_else(none, |s| s.into_bound(py)),
            facts_at.into_any(),
            if nps_score == -1 {
                none()
            } else {
                nps_score.into_bound_py_any(py)?
            },
            Self::opt(py, nps_at)?,
            open_tickets.into_bound_py_any(py)?,
            Self::opt(py, sub_started)?,
            Self::opt(py, sub_cancelled)?,
            recent_ids.into_any(),
            applied_offset.into_bound_py_any(py)?,
            Self::opt(py, quiet_since)?,
            Self::opt(py, drop_since)?,
            (flags & 1 != 0).into_bound_py_any(py)?,
            (flags & 2 != 0).into_bound_py_any(py)?,
            self.band(py, last_band)?,
            if published_score == -1 {
                none()
            } else {
                published_score.into_bound_py_any(py)?
            },
            self.band(py, published_band)?,
            published.into_any(),
            Self::opt(py, due)?,
            top_users.into_any(),
            if ext_flags & 1 != 0 {
                key_user.into_bound_py_any(py)?
            } else {
                none()
            },
            Self::opt(py, key_since)?,
            if pending == NO_DAY {
                none()
            } else {
                pending.into_bound_py_any(py)?
            },
            drop_base.into_any(),
            dispersion.into_bound_py_any(py)?,
            Self::opt(py, poor_pending)?,
            Self::opt(py, shown_activity)?,
            Self::opt(py, shown_quiet)?,
            Self::opt(py, shown_drop)?,
            (ext_flags & 2 != 0).into_bound_py_any(py)?,
            history.into_any(),
            if through == NO_DAY {
                none()
            } else {
                through.into_bound_py_any(py)?
            },
            scored.into_any(),
            Self::opt(py, first_activity)?,
            milestones.into_any(),
            published_milestones.into_bound_py_any(py)?,
            none(),
        ];
        self.state.bind(py).call1(PyTuple::new(py, args)?)
    }

    /// An independent copy of a state (`clone_state`): the containers are copied, the quiet cache is not.
    fn clone_state<'py>(&self, py: Python<'py>, s: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        let mut args: Vec<Bound<'py, PyAny>> = Vec::with_capacity(FIELDS.len());
        for (name, attr) in FIELDS.iter().zip(&self.names) {
            let value = s.getattr(attr.bind(py))?;
            args.push(match *name {
                "days" | "facts_at_ms" | "published_components" | "milestones" => {
                    value.downcast::<PyDict>()?.copy()?.into_any()
                }
                "top_users" | "history" | "scored" => {
                    let list = value.downcast::<PyList>()?;
                    list.get_slice(0, list.len()).into_any()
                }
                "quiet_cache" => py.None().into_bound(py),
                _ => value,
            });
        }
        self.state.bind(py).call1(PyTuple::new(py, args)?)
    }

    /// Count an active `day` of `user` among the account's top users, the list `users` of at most `top`
    /// entries (`streamer.core.engine.python_touch_user`, the reference: the same decay through the C
    /// library's pow, the same ties). Returns False, having changed nothing, where it cannot give the
    /// reference's answer in 64-bit numbers (an entry that is not an unsigned 64-bit user, a float and two
    /// days, a weight that is not finite, a decay that overflows): the reference is then called.
    fn touch_user(
        &self,
        py: Python<'_>,
        users: &Bound<'_, PyList>,
        user: &Bound<'_, PyAny>,
        day: &Bound<'_, PyAny>,
        top: usize,
    ) -> PyResult<bool> {
        const HALF_LIFE_DAYS: f64 = 28.0;
        let (Ok(id), Ok(today)) = (user.extract::<u64>(), day.extract::<i64>()) else {
            return Ok(false);
        };
        // weight * 0.5 ** ((day - last_day) / 28), as Python computes it; None where Python would raise
        // or the 64-bit answer could differ.
        let decayed = |weight: f64, last: i64| -> Option<f64> {
            let age = today.checked_sub(last)?;
            if age.unsigned_abs() > 1 << 53 || !weight.is_finite() {
                return None;
            }
            // SAFETY: pow is the C library's, pure.
            let factor = unsafe { pow(0.5, age as f64 / HALF_LIFE_DAYS) };
            factor.is_finite().then_some(weight * factor)
        };
        let mut entries = Vec::with_capacity(users.len());
        for entry in users.iter() {
            let t = entry.downcast::<PyTuple>()?;
            if t.len() != 4 {
                return Ok(false);
            }
            let (Ok(u), Ok(weight), Ok(last)) = (
                t.get_item(0)?.extract::<u64>(),
                t.get_item(1)?.extract::<f64>(),
                t.get_item(2)?.extract::<i64>(),
            ) else {
                return Ok(false);
            };
            if !t.get_item(1)?.is_exact_instance_of::<PyFloat>() {
                return Ok(false);
            }
            entries.push((u, weight, last));
        }
        let cls = self.top_user.bind(py);
        if let Some(i) = entries.iter().position(|&(u, _, _)| u == id) {
            let (_, weight, last) = entries[i];
            if today > last {
                let Some(w) = decayed(weight, last) else {
                    return Ok(false);
                };
                let first = users.get_item(i)?.downcast::<PyTuple>()?.get_item(3)?;
                let w = PyFloat::new(py, w + 1.0).into_any();
                users.set_item(
                    i,
                    named_tuple::<4>(py, cls, [user.clone(), w, day.clone(), first])?,
                )?;
            }
            return Ok(true);
        }
        let one = || PyFloat::new(py, 1.0).into_any();
        if entries.len() < top {
            users.append(named_tuple::<4>(
                py,
                cls,
                [user.clone(), one(), day.clone(), day.clone()],
            )?)?;
            return Ok(true);
        }
        // The weakest as of today gives its place up (the first of equals, as min does), and its weight.
        let mut weakest: Option<(usize, f64, u64)> = None;
        for (i, &(u, weight, last)) in entries.iter().enumerate() {
            let Some(w) = decayed(weight, last) else {
                return Ok(false);
            };
            if weakest.map_or(true, |(_, bw, bu)| w < bw || (w == bw && u < bu)) {
                weakest = Some((i, w, u));
            }
        }
        let Some((i, inherited, _)) = weakest else {
            return Ok(false); // top is 0: nothing to give up
        };
        let w = PyFloat::new(py, inherited + 1.0).into_any();
        users.set_item(
            i,
            named_tuple::<4>(py, cls, [user.clone(), w, day.clone(), day.clone()])?,
        )?;
        Ok(true)
    }

    /// Raise ValueError naming the field if the encoder could not encode the state (`check_encodable`,
    /// the reference: the same checks in the same order, so the same message).
    fn check<'py>(&self, py: Python<'py>, s: &Bound<'py, PyAny>) -> PyResult<()> {
        let out_of_range = |name: &str| PyValueError::new_err(format!("state field {name} out of range"));
        let get = |name: &Bound<'py, PyString>| s.getattr(name);
        // An int64, or (when absent is allowed) None; the lowest int64 is the absent marker, not a value.
        let int64 = |v: &Bound<'_, PyAny>, optional: bool| -> bool {
            if optional && v.is_none() {
                return true;
            }
            match v.extract::<i64>() {
                Ok(n) => !optional || n != i64::MIN,
                Err(_) => false,
            }
        };
        for name in [
            intern!(py, "first_seen_ms"),
            intern!(py, "clock_ms"),
            intern!(py, "applied_offset"),
        ] {
            if !int64(&get(name)?, false) {
                return Err(out_of_range(name.to_str()?));
            }
        }
        for name in [
            intern!(py, "last_activity_ms"),
            intern!(py, "nps_at_ms"),
            intern!(py, "subscription_started_ms"),
            intern!(py, "subscription_cancelled_ms"),
            intern!(py, "quiet_since_ms"),
            intern!(py, "drop_since_ms"),
            intern!(py, "seats"),
            intern!(py, "due_ms"),
            intern!(py, "renewal_ms"),
            intern!(py, "first_activity_ms"),
        ] {
            if !int64(&get(name)?, true) {
                return Err(out_of_range(name.to_str()?));
            }
        }
        let in_range = |v: &Bound<'_, PyAny>, low: i64, high: i64| {
            v.extract::<i64>().is_ok_and(|n| low <= n && n <= high)
        };
        let nps = get(intern!(py, "nps_score"))?;
        if !nps.is_none() && !in_range(&nps, 0, 127) {
            return Err(out_of_range("nps_score"));
        }
        if !in_range(
            &get(intern!(py, "open_tickets"))?,
            i32::MIN.into(),
            i32::MAX.into(),
        ) {
            return Err(out_of_range("open_tickets"));
        }
        let score = get(intern!(py, "published_score"))?;
        if !score.is_none() && !in_range(&score, 0, (1 << 15) - 1) {
            return Err(out_of_range("published_score"));
        }
        let arr = get(intern!(py, "arr"))?;
        if !arr.is_none()
            && !arr
                .extract::<f64>()
                .is_ok_and(|v| (0.0..f64::INFINITY).contains(&v))
        {
            return Err(out_of_range("arr"));
        }
        for name in [
            intern!(py, "account_id"),
            intern!(py, "plan"),
            intern!(py, "segment"),
            intern!(py, "name"),
            intern!(py, "owner"),
            intern!(py, "currency"),
            intern!(py, "contract"),
        ] {
            let v = get(name)?;
            if v.is_none() {
                continue;
            }
            let text = v.downcast::<PyString>()?;
            if text.len()? * 4 >= STR_NONE as usize && text.to_str()?.len() >= STR_NONE as usize {
                return Err(PyValueError::new_err(format!(
                    "state field {} too long",
                    name.to_str()?
                )));
            }
        }
        let facts_at = get(intern!(py, "facts_at_ms"))?;
        for (key, at) in facts_at.downcast::<PyDict>()?.iter() {
            if !at.extract::<i64>().is_ok_and(|n| n != i64::MIN) {
                return Err(PyValueError::new_err(format!(
                    "state field facts_at_ms.{key} out of range"
                )));
            }
        }
        let count = |name: &Bound<'py, PyString>| -> PyResult<usize> { get(name)?.len() };
        if count(intern!(py, "days"))? >= STR_NONE as usize
            || count(intern!(py, "recent_ids"))? >= 8 * STR_NONE as usize
            || count(intern!(py, "top_users"))? > 255
            || count(intern!(py, "history"))? > 255
            || count(intern!(py, "scored"))? > 255
        {
            return Err(PyValueError::new_err("state has too many buckets, ids or users"));
        }
        if count(intern!(py, "recent_ids"))? % 8 != 0 {
            return Err(PyValueError::new_err(RING_NOT_WHOLE));
        }
        for name in [
            intern!(py, "key_since_ms"),
            intern!(py, "poor_pending_ms"),
            intern!(py, "published_activity_ms"),
            intern!(py, "published_quiet_since_ms"),
            intern!(py, "published_drop_since_ms"),
        ] {
            if !int64(&get(name)?, true) {
                return Err(out_of_range(name.to_str()?));
            }
        }
        if !matches!(count(intern!(py, "drop_base"))?, 0 | 7) {
            return Err(PyValueError::new_err(
                "state field drop_base must hold 7 weekday means",
            ));
        }
        for day in get(intern!(py, "scored"))?.try_iter()? {
            let (d, score, parts): (Bound<'_, PyAny>, Bound<'_, PyAny>, Bound<'_, PyAny>) = day?.extract()?;
            if !(in_range(&d, i32::MIN.into(), i32::MAX.into())
                && in_range(&score, 0, 255)
                && parts.len()? == PARTS)
            {
                return Err(out_of_range("scored"));
            }
        }
        let milestones = get(intern!(py, "milestones"))?;
        let milestones = milestones.downcast::<PyDict>()?;
        if milestones.len() > 255 || !in_range(&get(intern!(py, "published_milestones"))?, 0, u16::MAX.into())
        {
            return Err(PyValueError::new_err("state has too many milestones"));
        }
        for (key, m) in milestones.iter() {
            let (reached, events, users, _missed): (
                Bound<'_, PyAny>,
                Bound<'_, PyAny>,
                Bound<'_, PyAny>,
                Bound<'_, PyAny>,
            ) = m.extract()?;
            if !in_range(&key, 0, u32::MAX.into())
                || !in_range(&events, 0, u16::MAX.into())
                || users.len()? > 255
            {
                return Err(out_of_range("milestones"));
            }
            if !int64(&reached, true) {
                return Err(out_of_range("milestones"));
            }
        }
        Ok(())
    }

    /// Serialise a state (`encode_state`): the same bytes as the Python encoder.
    ///
    /// A value the format cannot hold raises ValueError, as the Python encoder's `struct.error` is one
    /// for its callers (`check_encodable` is what rejects such a state first).
    fn encode<'py>(&self, py: Python<'py>, s: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyBytes>> {
        self.encode_state(py, s).map_err(|err| {
            if err.is_instance_of::<PyOverflowError>(py) {
                PyValueError::new_err(format!("state field out of range: {}", err.value(py)))
            } else {
                err
            }
        })
    }
}

impl Codec {
    fn encode_state<'py>(&self, py: Python<'py>, s: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyBytes>> {
        let get = |name: &Bound<'py, PyString>| s.getattr(name);
        let published = get(intern!(py, "published_components"))?;
        let published = published.downcast::<PyDict>()?;
        let mut comps = [f64::NAN; COMPONENTS];
        let mut found = 0;
        for (c, name) in comps.iter_mut().zip(&self.components) {
            if let Some(v) = published.get_item(name.bind(py))? {
                *c = v.extract()?;
                found += 1;
            }
        }
        // Keys are distinct: all of them are components when as many were found as there are.
        if found != published.len() {
            return Err(PyValueError::new_err("unknown published component"));
        }
        let facts_at = get(intern!(py, "facts_at_ms"))?;
        let facts_at = facts_at.downcast::<PyDict>()?;
        let fact = |key: &str| -> PyResult<i64> {
            match facts_at.get_item(key)? {
                Some(v) => v.extract(),
                None => Ok(NONE),
            }
        };
        let mut w = Writer {
            out: Vec::with_capacity(1024),
        };
        w.put(&[VERSION]);
        w.put(&get(intern!(py, "first_seen_ms"))?.extract::<i64>()?.to_le_bytes());
        w.put(&get(intern!(py, "clock_ms"))?.extract::<i64>()?.to_le_bytes());
        w.put(
            &get(intern!(py, "applied_offset"))?
                .extract::<i64>()?
                .to_le_bytes(),
        );
        w.put(&opt_i64(&get(intern!(py, "last_activity_ms"))?)?.to_le_bytes());
        w.put(&opt_i64(&get(intern!(py, "nps_at_ms"))?)?.to_le_bytes());
        let nps = get(intern!(py, "nps_score"))?;
        w.put(&(if nps.is_none() { -1 } else { nps.extract::<i8>()? }).to_le_bytes());
        w.put(&get(intern!(py, "open_tickets"))?.extract::<i32>()?.to_le_bytes());
        for name in [
            intern!(py, "subscription_started_ms"),
            intern!(py, "subscription_cancelled_ms"),
            intern!(py, "quiet_since_ms"),
            intern!(py, "drop_since_ms"),
        ] {
            w.put(&opt_i64(&get(name)?)?.to_le_bytes());
        }
        let poor_open = get(intern!(py, "poor_open"))?.is_truthy()?;
        let unpublished = get(intern!(py, "unpublished"))?.is_truthy()?;
        w.put(&[u8::from(poor_open) | if unpublished { 2 } else { 0 }]);
        w.put(&[self.band_index(py, &get(intern!(py, "last_band"))?)?]);
        let score = get(intern!(py, "published_score"))?;
        w.put(
            &(if score.is_none() {
                -1
            } else {
                score.extract::<i16>()?
            })
            .to_le_bytes(),
        );
        w.put(&[self.band_index(py, &get(intern!(py, "published_band"))?)?]);
        for c in comps {
            w.put(&c.to_le_bytes());
        }
        w.put(&opt_i64(&get(intern!(py, "seats"))?)?.to_le_bytes());
        w.put(&fact("seats")?.to_le_bytes());
        w.put(&opt_i64(&get(intern!(py, "due_ms"))?)?.to_le_bytes());

        w.string(&get(intern!(py, "account_id"))?)?;
        for key in FACT_STRINGS {
            w.string(&s.getattr(PyString::intern(py, key))?)?;
            w.put(&fact(key)?.to_le_bytes());
        }

        let days = get(intern!(py, "days"))?;
        let days = days.downcast::<PyDict>()?;
        let n = u16::try_from(days.len()).map_err(|_| PyValueError::new_err("too many buckets"))?;
        w.put(&n.to_le_bytes());
        let mut sorted: Vec<(i32, Bound<'py, PyAny>)> = Vec::with_capacity(days.len());
        for (day, bucket) in days.iter() {
            sorted.push((day.extract()?, bucket));
        }
        sorted.sort_by_key(|(day, _)| *day);
        for (day, bucket) in sorted {
            let bucket = bucket.downcast::<PyTuple>()?;
            let events: i64 = bucket.get_item(0)?.extract()?;
            let events = u32::try_from(events.min(u32::MAX as i64))
                .map_err(|_| PyValueError::new_err("bucket events out of range"))?;
            let weight: f64 = bucket.get_item(1)?.extract()?;
            let users: u128 = bucket.get_item(2)?.extract()?;
            let features: u64 = bucket.get_item(3)?.extract()?;
            w.put(&day.to_le_bytes());
            w.put(&events.to_le_bytes());
            w.put(&weight.to_le_bytes());
            w.put(&(users as u64).to_le_bytes());
            w.put(&((users >> 64) as u64).to_le_bytes());
            w.put(&features.to_le_bytes());
        }
        let ids = get(intern!(py, "recent_ids"))?;
        let ids = ids.downcast::<PyBytes>()?.as_bytes();
        if ids.len() % 8 != 0 {
            return Err(PyValueError::new_err(RING_NOT_WHOLE));
        }
        let n = u16::try_from(ids.len() / 8).map_err(|_| PyValueError::new_err("too many ids"))?;
        w.put(&n.to_le_bytes());
        w.put(ids);

        let key_user = get(intern!(py, "key_user"))?;
        let published_poor = get(intern!(py, "published_poor"))?.is_truthy()?;
        w.put(&[u8::from(!key_user.is_none()) | if published_poor { 2 } else { 0 }]);
        let key = if key_user.is_truthy()? {
            key_user.extract::<u64>()?
        } else {
            0
        };
        w.put(&key.to_le_bytes());
        w.put(&opt_i64(&get(intern!(py, "key_since_ms"))?)?.to_le_bytes());
        let pending = get(intern!(py, "drop_pending_day"))?;
        w.put(
            &(if pending.is_none() {
                NO_DAY
            } else {
                pending.extract::<i32>()?
            })
            .to_le_bytes(),
        );
        w.put(&opt_i64(&get(intern!(py, "poor_pending_ms"))?)?.to_le_bytes());
        w.put(
            &get(intern!(py, "drop_dispersion"))?
                .extract::<f64>()?
                .to_le_bytes(),
        );
        let base = get(intern!(py, "drop_base"))?;
        if base.is_truthy()? {
            let base: Vec<f64> = base.extract()?;
            if base.len() != 7 {
                return Err(PyValueError::new_err("drop_base must hold 7 weekday means"));
            }
            for v in base {
                w.put(&v.to_le_bytes());
            }
        } else {
            for _ in 0..7 {
                w.put(&f64::NAN.to_le_bytes());
            }
        }
        for name in [
            intern!(py, "published_activity_ms"),
            intern!(py, "published_quiet_since_ms"),
            intern!(py, "published_drop_since_ms"),
        ] {
            w.put(&opt_i64(&get(name)?)?.to_le_bytes());
        }

        let top = get(intern!(py, "top_users"))?;
        let top = top.downcast::<PyList>()?;
        w.put(&[count_u8(top.len())?]);
        for user in top.iter() {
            let (u, weight, last_day, first_day): (u64, f64, i32, i32) = user.extract()?;
            w.put(&u.to_le_bytes());
            w.put(&weight.to_le_bytes());
            w.put(&last_day.to_le_bytes());
            w.put(&first_day.to_le_bytes());
        }
        let through = get(intern!(py, "history_through"))?;
        w.put(
            &(if through.is_none() {
                NO_DAY
            } else {
                through.extract::<i32>()?
            })
            .to_le_bytes(),
        );
        let history = get(intern!(py, "history"))?;
        let history = history.downcast::<PyList>()?;
        w.put(&[count_u8(history.len())?]);
        for week in history.iter() {
            let (index, user_days, counted): (i32, f64, u8) = week.extract()?;
            w.put(&index.to_le_bytes());
            w.put(&user_days.to_le_bytes());
            w.put(&[counted]);
        }

        let arr = get(intern!(py, "arr"))?;
        w.put(
            &(if arr.is_none() {
                f64::NAN
            } else {
                arr.extract::<f64>()?
            })
            .to_le_bytes(),
        );
        w.put(&opt_i64(&get(intern!(py, "renewal_ms"))?)?.to_le_bytes());
        for key in REVENUE_FACTS {
            w.put(&fact(key)?.to_le_bytes());
        }
        w.string(&get(intern!(py, "currency"))?)?;
        w.string(&get(intern!(py, "contract"))?)?;

        let scored = get(intern!(py, "scored"))?;
        let scored = scored.downcast::<PyList>()?;
        w.put(&[count_u8(scored.len())?]);
        for day in scored.iter() {
            let (d, score, parts): (i32, u8, Bound<'py, PyAny>) = day.extract()?;
            let parts = parts.downcast::<PyBytes>()?.as_bytes();
            w.put(&d.to_le_bytes());
            w.put(&[score]);
            // struct's "32s": shorter parts are padded with zeros, longer ones cut.
            let mut fixed = [0u8; PARTS];
            let n = parts.len().min(PARTS);
            fixed[..n].copy_from_slice(&parts[..n]);
            w.put(&fixed);
        }

        w.put(&opt_i64(&get(intern!(py, "first_activity_ms"))?)?.to_le_bytes());
        w.put(
            &get(intern!(py, "published_milestones"))?
                .extract::<u16>()?
                .to_le_bytes(),
        );
        let milestones = get(intern!(py, "milestones"))?;
        let milestones = milestones.downcast::<PyDict>()?;
        w.put(&[count_u8(milestones.len())?]);
        let mut sorted: Vec<(u32, Bound<'py, PyAny>)> = Vec::with_capacity(milestones.len());
        for (key, m) in milestones.iter() {
            sorted.push((key.extract()?, m));
        }
        sorted.sort_by_key(|(key, _)| *key);
        for (key, m) in sorted {
            let (reached, events, users, missed): (Bound<'py, PyAny>, u16, Vec<u32>, Bound<'py, PyAny>) =
                m.extract()?;
            w.put(&key.to_le_bytes());
            w.put(&opt_i64(&reached)?.to_le_bytes());
            w.put(&events.to_le_bytes());
            w.put(&[u8::from(missed.is_truthy()?)]);
            w.put(&[count_u8(users.len())?]);
            for u in users {
                w.put(&u.to_le_bytes());
            }
        }
        Ok(PyBytes::new(py, &w.out))
    }
}

/// The unsigned 64-bit BLAKE2b (digest size 8, little endian) of a string's UTF-8: the hash of event ids,
/// user ids and sketch values (`streamer.core.state._python_blake64` is the reference).
#[pyfunction]
fn blake64(text: &str) -> u64 {
    use blake2::digest::{Update, VariableOutput};
    let mut hasher = blake2::Blake2bVar::new(8).expect("8 is a valid BLAKE2b digest size");
    hasher.update(text.as_bytes());
    let mut out = [0u8; 8];
    hasher
        .finalize_variable(&mut out)
        .expect("the buffer has the digest's size");
    u64::from_le_bytes(out)
}

extern "C" {
    // The C library's pow, exp and log, which CPython's float ** and math.exp and math.log call: the
    // same floats to the last bit.
    fn pow(x: f64, y: f64) -> f64;
    fn exp(x: f64) -> f64;
    fn log(x: f64) -> f64;
}

/// An exact `int` of 64 bits (signed or not, as `read` reads it), or None (another type, out of range).
///
/// # Safety
/// `obj` is a valid object and the GIL is held.
unsafe fn int64<T: PartialEq>(
    obj: *mut pyo3::ffi::PyObject,
    read: unsafe extern "C" fn(*mut pyo3::ffi::PyObject) -> T,
    failed: T,
) -> Option<T> {
    if pyo3::ffi::PyLong_CheckExact(obj) == 0 {
        return None;
    }
    let v = read(obj);
    if v == failed && !pyo3::ffi::PyErr_Occurred().is_null() {
        pyo3::ffi::PyErr_Clear(); // out of range: the caller falls back to Python
        return None;
    }
    Some(v)
}

/// `max(days)` for a dict whose keys are all ints of 64 bits (an account's days), without comparing
/// Python ints; for any other dict, what `max` itself returns or raises.
#[pyfunction]
fn newest_day<'py>(py: Python<'py>, days: &Bound<'py, PyDict>) -> PyResult<Bound<'py, PyAny>> {
    let mut newest: Option<i64> = None;
    let mut pos: pyo3::ffi::Py_ssize_t = 0;
    let mut key: *mut pyo3::ffi::PyObject = std::ptr::null_mut();
    let mut value: *mut pyo3::ffi::PyObject = std::ptr::null_mut();
    // SAFETY: the GIL is held and nothing runs Python code while the dict is walked; the borrowed keys
    // are only read.
    let exact = unsafe {
        let mut exact = true;
        while pyo3::ffi::PyDict_Next(days.as_ptr(), &mut pos, &mut key, &mut value) != 0 {
            match int64(key, pyo3::ffi::PyLong_AsLongLong, -1) {
                Some(day) => newest = Some(newest.map_or(day, |n| n.max(day))),
                None => {
                    exact = false;
                    break;
                }
            }
        }
        exact
    };
    match newest {
        Some(day) if exact => day.into_bound_py_any(py),
        // Another key, or none (max raises ValueError).
        _ => py.import("builtins")?.getattr("max")?.call1((days,)),
    }
}

/// CPython's `math.lgamma` (its own Lanczos approximation, not the C library's) for finite `x >= 1`,
/// the same operations in the same order.
#[allow(clippy::excessive_precision)]
fn lgamma_from_one(x: f64) -> f64 {
    const G: f64 = 6.024680040776729583740234375;
    const NUM: [f64; 13] = [
        23531376880.410759688572007674451636754734846804940,
        42919803642.649098768957899047001988850926355848959,
        35711959237.355668049440185451547166705960488635843,
        17921034426.037209699919755754458931112671403265390,
        6039542586.3520280050642916443072979210699388420708,
        1439720407.3117216736632230727949123939715485786772,
        248874557.86205415651146038641322942321632125127801,
        31426415.585400194380614231628318205362874684987640,
        2876370.6289353724412254090516208496135991145378768,
        186056.26539522349504029498971604569928220784236328,
        8071.6720023658162106380029022722506138218516325024,
        210.82427775157934587250973392071336271166969580291,
        2.5066282746310002701649081771338373386264310793408,
    ];
    const DEN: [f64; 13] = [
        0.0,
        39916800.0,
        120543840.0,
        150917976.0,
        105258076.0,
        45995730.0,
        13339535.0,
        2637558.0,
        357423.0,
        32670.0,
        1925.0,
        66.0,
        1.0,
    ];
    if x == x.floor() && x <= 2.0 {
        return 0.0; // lgamma(1) = lgamma(2) = 0
    }
    // The rational function L_g(x): in x below 5, in 1/x above (no overflow).
    let (mut num, mut den) = (0.0f64, 0.0f64);
    if x < 5.0 {
        for i in (0..13).rev() {
            num = num * x + NUM[i];
            den = den * x + DEN[i];
        }
    } else {
        for i in 0..13 {
            num = num / x + NUM[i];
            den = den / x + DEN[i];
        }
    }
    // SAFETY: the C library's log, pure.
    unsafe {
        let mut r = log(num / den) - G;
        r += (x - 0.5) * (log(x + G - 0.5) - 1.0);
        r
    }
}

/// `streamer.core.rhythm.python_gamma_q(a, x)`, the regularized upper gamma Q(a, x) (its reference: the
/// same operations in the same order), for finite `a >= 1` and `x > 0`. None where the reference
/// would raise (a zero division, exp overflowing) or is not asked this (other arguments): the
/// reference is then called.
#[pyfunction]
fn gamma_q(a: f64, x: f64) -> Option<f64> {
    if !(a.is_finite() && x.is_finite() && a >= 1.0 && x > 0.0) {
        return None;
    }
    // math.exp: OverflowError where a finite argument overflows.
    let checked_exp = |v: f64| {
        // SAFETY: the C library's exp, pure.
        let e = unsafe { exp(v) };
        (v.is_finite() && e.is_finite()).then_some(e)
    };
    let gln = lgamma_from_one(a);
    // SAFETY: the C library's log, pure; x > 0.
    let log_x = unsafe { log(x) };
    if x < a + 1.0 {
        let mut term = 1.0 / a;
        let mut total = term;
        let mut ap = a;
        for _ in 0..500 {
            ap += 1.0;
            term *= x / ap;
            total += term;
            if term.abs() < total.abs() * 1e-12 {
                break;
            }
        }
        let v = 1.0 - total * checked_exp(-x + a * log_x - gln)?;
        return Some(if v > 0.0 { v } else { 0.0 }); // max(0.0, v)
    }
    const TINY: f64 = 1e-300;
    let mut b = x + 1.0 - a;
    if b == 0.0 {
        return None; // ZeroDivisionError
    }
    let mut c = 1.0 / TINY;
    let mut d = 1.0 / b;
    let mut h = d;
    for i in 1..500 {
        let fi = i as f64;
        let an = -fi * (fi - a);
        b += 2.0;
        d = an * d + b;
        if d.abs() < TINY {
            d = TINY;
        }
        c = b + an / c;
        if c.abs() < TINY {
            c = TINY;
        }
        d = 1.0 / d;
        let delta = d * c;
        h *= delta;
        if (delta - 1.0).abs() < 1e-12 {
            break;
        }
    }
    let v = checked_exp(-x + a * log_x - gln)? * h;
    Some(if v < 1.0 { v } else { 1.0 }) // min(1.0, v)
}

/// The parts of `streamer.core.rhythm.rhythm` (its reference): the days `first..=last` of the user-days
/// `u` (a dict), less `excluded` days and days before `since`, as
/// `(days, active_days, share, mean, dispersion, total)`. The sums run in the same order, so the floats
/// are the same to the last bit.
#[pyfunction]
fn rhythm_parts<'py>(
    py: Python<'py>,
    u: &Bound<'py, PyDict>,
    first: i64,
    last: i64,
    excluded: &Bound<'py, PyAny>,
    since: i64,
) -> PyResult<Bound<'py, PyTuple>> {
    const MAX_SHARE: f64 = 0.95;
    let start = first.max(since);
    let span = usize::try_from(last - start + 1).unwrap_or(0);
    // The user-days of the span, by day; the excluded days marked.
    let mut x_of = vec![0.0f64; span];
    for (day, units) in u.iter() {
        let day: i64 = day.extract()?;
        if (start..=last).contains(&day) {
            x_of[(day - start) as usize] = units.extract()?;
        }
    }
    let mut skip = vec![false; span];
    if excluded.is_truthy()? {
        for day in excluded.try_iter()? {
            let day: i64 = day?.extract()?;
            if (start..=last).contains(&day) {
                skip[(day - start) as usize] = true;
            }
        }
    }
    let mut n = [0i64; 7];
    let mut active = [0i64; 7];
    let mut total = [0.0f64; 7];
    let mut ws: Vec<usize> = Vec::with_capacity(span);
    let mut xs: Vec<f64> = Vec::with_capacity(span);
    let mut w = (start + 3).rem_euclid(7) as usize;
    for i in 0..span {
        if !skip[i] {
            let x = x_of[i];
            n[w] += 1;
            total[w] += x;
            if x > 0.0 {
                active[w] += 1;
            }
            ws.push(w);
            xs.push(x);
        }
        w = if w < 6 { w + 1 } else { 0 };
    }
    let observed: i64 = n.iter().sum();
    let active_days: i64 = active.iter().sum();
    let overall = (active_days as f64 + 0.5) / ((observed + 1) as f64);
    let mut share = [0.0f64; 7];
    let mut mean = [0.0f64; 7];
    let total_sum = total.iter().fold(0.0, |a, b| a + b);
    let overall_mean = if observed != 0 {
        total_sum / observed as f64
    } else {
        0.0
    };
    for w in 0..7 {
        share[w] = if n[w] != 0 {
            let v = (active[w] as f64 + 0.5 * overall) / (n[w] as f64 + 0.5);
            if v < MAX_SHARE {
                v
            } else {
                MAX_SHARE
            }
        } else {
            overall
        };
        mean[w] = if n[w] != 0 {
            total[w] / n[w] as f64
        } else {
            overall_mean
        };
    }
    let mut dispersion = 1.0;
    if xs.len() > 7 && overall_mean > 0.0 {
        let two = std::hint::black_box(2.0);
        let squares = ws
            .iter()
            .zip(&xs)
            .fold(0.0, |acc, (&w, &x)| acc + unsafe { pow(x - mean[w], two) });
        let residual = squares / (xs.len() - 7) as f64;
        let ratio = residual / overall_mean;
        dispersion = if ratio > 1.0 { ratio } else { 1.0 };
    }
    (
        observed,
        active_days,
        PyTuple::new(py, share)?,
        PyTuple::new(py, mean)?,
        dispersion,
        total_sum,
    )
        .into_pyobject(py)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's days_from_civil).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

fn digits(b: &[u8]) -> Option<i64> {
    b.iter().try_fold(0i64, |n, &c| {
        c.is_ascii_digit().then(|| n * 10 + i64::from(c - b'0'))
    })
}

/// Epoch milliseconds of an RFC 3339 timestamp with an offset, or None when it is not one.
///
/// The reference is `streamer.core.events._python_rfc3339_ms` (a regular expression, then
/// `datetime.fromisoformat`), and this accepts exactly what it accepts: year 1 to 9999, a real date and
/// time of day (no leap second), a fraction of any length (its first six digits count), and an offset
/// of less than 24 hours written as two two-digit numbers.
fn rfc3339(text: &[u8]) -> Option<i64> {
    if text.len() < 20 {
        return None;
    }
    let (date, time) = (&text[..10], &text[11..19]);
    if date[4] != b'-' || date[7] != b'-' || !matches!(text[10], b'T' | b't' | b' ') {
        return None;
    }
    if time[2] != b':' || time[5] != b':' {
        return None;
    }
    let year = digits(&date[..4])?;
    let month = digits(&date[5..7])?;
    let day = digits(&date[8..10])?;
    let hour = digits(&time[..2])?;
    let minute = digits(&time[3..5])?;
    let second = digits(&time[6..8])?;
    let mut rest = &text[19..];
    let mut micros = 0i64;
    if rest.first() == Some(&b'.') {
        let n = rest[1..].iter().take_while(|c| c.is_ascii_digit()).count();
        if n == 0 {
            return None;
        }
        for i in 0..6 {
            micros = micros * 10
                + rest
                    .get(1 + i)
                    .filter(|_| i < n)
                    .map_or(0, |&c| i64::from(c - b'0'));
        }
        rest = &rest[1 + n..];
    }
    let offset_minutes = match rest {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let minutes = digits(&[*h1, *h2])? * 60 + digits(&[*m1, *m2])?;
            if minutes >= 24 * 60 {
                return None;
            }
            if *sign == b'-' {
                -minutes
            } else {
                minutes
            }
        }
        _ => return None,
    };
    if !(1..=9999).contains(&year)
        || !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
    {
        return None;
    }
    if hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let seconds = days_from_civil(year, month, day) * 86_400 + hour * 3_600 + minute * 60 + second;
    let micros = (seconds - offset_minutes * 60) * 1_000_000 + micros;
    Some(micros.div_euclid(1_000))
}

/// `rfc3339_ms(value)`: epoch milliseconds of an RFC 3339 timestamp with an offset, or None.
#[pyfunction]
fn rfc3339_ms(value: &Bound<'_, PyString>) -> Option<i64> {
    // A string with a lone surrogate has no UTF-8 and is no timestamp either.
    value.to_str().ok().and_then(|text| rfc3339(text.as_bytes()))
}

/// Kafka's murmur2 (`org.apache.kafka.common.utils.Utils.murmur2`), as an unsigned int.
///
/// The reference is `streamer.kafka.partitioner.murmur2`; every record the worker reads is routed by it.
#[pyfunction]
fn murmur2(data: &[u8]) -> u32 {
    const M: u32 = 0x5BD1_E995;
    let mut h: u32 = 0x9747_B28C ^ (data.len() as u32);
    let mut words = data.chunks_exact(4);
    for word in &mut words {
        let mut k = u32::from_le_bytes(word.try_into().expect("4 bytes")).wrapping_mul(M);
        k ^= k >> 24;
        h = h.wrapping_mul(M) ^ k.wrapping_mul(M);
    }
    let tail = words.remainder();
    if tail.len() >= 3 {
        h ^= u32::from(tail[2]) << 16;
    }
    if tail.len() >= 2 {
        h ^= u32::from(tail[1]) << 8;
    }
    if !tail.is_empty() {
        h = (h ^ u32::from(tail[0])).wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^ (h >> 15)
}

/// The partition Kafka's default partitioner gives the UTF-8 of `key` among `partitions`.
#[pyfunction]
fn partition_of_str(partitions: u32, key: &str) -> PyResult<u32> {
    if partitions == 0 {
        return Err(PyValueError::new_err("partitions must be positive"));
    }
    Ok((murmur2(key.as_bytes()) & 0x7FFF_FFFF) % partitions)
}

#[pymodule]
fn churnwatch_native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Codec>()?;
    m.add_class::<event::EventParser>()?;
    m.add_function(wrap_pyfunction!(murmur2, m)?)?;
    m.add_function(wrap_pyfunction!(partition_of_str, m)?)?;
    m.add_function(wrap_pyfunction!(rfc3339_ms, m)?)?;
    m.add_function(wrap_pyfunction!(blake64, m)?)?;
    m.add_function(wrap_pyfunction!(rhythm_parts, m)?)?;
    m.add_function(wrap_pyfunction!(gamma_q, m)?)?;
    m.add_function(wrap_pyfunction!(newest_day, m)?)?;
    m.add("STATE_VERSION", VERSION)?;
    Ok(())
}
