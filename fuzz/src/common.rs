//! What both state-machine targets share: how an input becomes a sequence of operations, the
//! small value sets operations choose from, and the seed writer.
//!
//! An input is decoded with `arbitrary`: first the target's setup, then operations until the
//! bytes run out (at most [`MAX_OPS`]). Operations carry small integers (`u8`) that pick from
//! fixed sets (pool handles, PE ids, addresses), so that the fuzzer hits the same PEs and pools
//! again and again instead of spreading over 2³² ids.
//!
//! Seeds (`fuzz/corpus/<target>/`) are written by `cargo test -- --ignored write_seeds` in this
//! crate through [`Encode`], which produces the bytes the derived `Arbitrary` impls decode back
//! into the same operations (arbitrary 1.x: integers little-endian, `bool` = low bit of a byte,
//! `Option` = a `bool` then the value, a derived enum's variant = `(u32 · variants) >> 32`).
//! The seed test decodes every seed and compares, so a change of that format fails loudly.

use std::sync::OnceLock;

use arbitrary::{Arbitrary, Unstructured};

use rsplib::core::registrar::Output;
use rsplib::core::wire::{AsapMessage, EnrpMessage, PPID_ASAP};

use rsplib::core::types::{PeId, PolicyInfo, PolicyType, PolicyValue, PoolHandle};

/// Most operations taken from one input (keeps every run short).
pub const MAX_OPS: usize = 512;

/// The setup, then the operations.
pub fn decode<'a, S: Arbitrary<'a>, O: Arbitrary<'a>>(data: &'a [u8]) -> Option<(S, Vec<O>)> {
    let mut u = Unstructured::new(data);
    let setup = S::arbitrary(&mut u).ok()?;
    let mut ops = Vec::new();
    while !u.is_empty() && ops.len() < MAX_OPS {
        match O::arbitrary(&mut u) {
            Ok(op) => ops.push(op),
            Err(_) => break,
        }
    }
    Some((setup, ops))
}

/// True if `RSPLIB_FUZZ_TRACE` is set: the harnesses then print every step (for reproducing
/// a crash: `RSPLIB_FUZZ_TRACE=1 cargo fuzz run TARGET ARTIFACT`).
pub fn trace() -> bool {
    static TRACE: OnceLock<bool> = OnceLock::new();
    *TRACE.get_or_init(|| std::env::var_os("RSPLIB_FUZZ_TRACE").is_some())
}

/// A registrar output for the trace, messages decoded.
pub fn describe(o: &Output) -> String {
    match o {
        Output::Send { conn, ppid, data } => {
            let m = match *ppid {
                PPID_ASAP => AsapMessage::decode(data).map(|d| format!("{:?}", d.message)),
                _ => EnrpMessage::decode(data).map(|d| format!("{:?}", d.message)),
            };
            format!(
                "send to {conn}: {}",
                m.unwrap_or_else(|e| format!("undecodable: {e}"))
            )
        }
        other => format!("{other:?}"),
    }
}

/// Raw message bytes: a `u16` length (cut to what is left), then that many bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct Raw(pub Vec<u8>);

impl std::fmt::Debug for Raw {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Raw(")?;
        for b in &self.0 {
            write!(f, "{b:02x}")?;
        }
        write!(f, ")")
    }
}

impl<'a> Arbitrary<'a> for Raw {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        let n = usize::from(u16::arbitrary(u)?).min(u.len());
        Ok(Raw(u.bytes(n)?.to_vec()))
    }
}

/// Up to [`List::MAX`] values: a `u8` count (modulo MAX + 1), then the values.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct List<T>(pub Vec<T>);

impl<T> List<T> {
    pub const MAX: u8 = 8;
}

impl<'a, T: Arbitrary<'a>> Arbitrary<'a> for List<T> {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        let n = u8::arbitrary(u)? % (Self::MAX + 1);
        (0..n)
            .map(|_| T::arbitrary(u))
            .collect::<Result<_, _>>()
            .map(List)
    }
}

/// The pools operations name: two valid handles, the empty (invalid) one and one of 33 bytes
/// (one too long for rsplib).
pub fn pool(i: u8) -> PoolHandle {
    match i % 4 {
        0 => "P".into(),
        1 => "Q".into(),
        2 => PoolHandle::new(b""),
        _ => PoolHandle::new(&[b'L'; 33]),
    }
}

/// The PE ids operations name (0 is invalid).
pub fn pe_id(i: u8) -> PeId {
    PeId([1, 2, 3, 0x8000_0001, 0][usize::from(i % 5)])
}

/// A policy of any of the 18 types, every value it carries derived from `value` (weights and
/// priorities as small integers, loads and the like as fractions of 2³²).
pub fn policy(kind: u8, value: u8) -> PolicyInfo {
    let t = PolicyType::ALL[usize::from(kind) % PolicyType::ALL.len()];
    let mut info = PolicyInfo::new(t);
    for v in t.wire_values() {
        let x = match v {
            PolicyValue::Weight | PolicyValue::Priority | PolicyValue::Distance => u32::from(value),
            _ => u32::from(value) * 0x0101_0101,
        };
        info.set(*v, x);
    }
    info
}

/// Registration lives, in ms (0 is invalid).
pub fn life(i: u8) -> u32 {
    [0, 1, 1_000, 30_000, u32::MAX][usize::from(i % 5)]
}

/// Writes the bytes that the derived `Arbitrary` impls decode into `self` (see the module
/// documentation).
pub trait Encode {
    fn encode(&self, out: &mut Vec<u8>);
}

impl Encode for u8 {
    fn encode(&self, out: &mut Vec<u8>) {
        out.push(*self);
    }
}

impl Encode for u16 {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes());
    }
}

impl Encode for u32 {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes());
    }
}

impl Encode for bool {
    fn encode(&self, out: &mut Vec<u8>) {
        out.push(u8::from(*self));
    }
}

impl<T: Encode> Encode for Option<T> {
    fn encode(&self, out: &mut Vec<u8>) {
        self.is_some().encode(out);
        if let Some(v) = self {
            v.encode(out);
        }
    }
}

impl Encode for Raw {
    fn encode(&self, out: &mut Vec<u8>) {
        u16::try_from(self.0.len())
            .expect("raw seed fits a u16 length")
            .encode(out);
        out.extend_from_slice(&self.0);
    }
}

impl<T: Encode> Encode for List<T> {
    fn encode(&self, out: &mut Vec<u8>) {
        assert!(self.0.len() <= usize::from(Self::MAX));
        (self.0.len() as u8).encode(out);
        for v in &self.0 {
            v.encode(out);
        }
    }
}

/// A derived enum's variant `index` of `count`: the smallest `u32` x with
/// `(x · count) >> 32 == index`.
pub fn variant(out: &mut Vec<u8>, index: u32, count: u32) {
    assert!(index < count);
    let x = (u64::from(index) << 32).div_ceil(u64::from(count));
    (x as u32).encode(out);
}

/// Encodes a setup and operations as one input.
pub fn input<S: Encode, O: Encode>(setup: &S, ops: &[O]) -> Vec<u8> {
    let mut out = Vec::new();
    setup.encode(&mut out);
    for op in ops {
        op.encode(&mut out);
    }
    out
}

/// Implements [`Encode`] for a struct (its fields in declaration order) or for an enum whose
/// variants are listed in declaration order (struct-like or unit variants).
#[macro_export]
macro_rules! encode_struct {
    ($ty:ident { $($field:ident),* $(,)? }) => {
        impl $crate::common::Encode for $ty {
            fn encode(&self, out: &mut Vec<u8>) {
                let $ty { $($field),* } = self;
                $( $crate::common::Encode::encode($field, out); )*
            }
        }
    };
}

#[macro_export]
macro_rules! encode_enum {
    ($ty:ident { $($variant:ident $({ $($field:ident),* $(,)? })? $(( $($tfield:ident),* ))?),* $(,)? }) => {
        impl $crate::common::Encode for $ty {
            #[allow(unused_assignments)]
            fn encode(&self, out: &mut Vec<u8>) {
                let names: &[&str] = &[$(stringify!($variant)),*];
                let count = names.len() as u32;
                let mut index = 0u32;
                $(
                    #[allow(unused_parens, irrefutable_let_patterns)]
                    if let $ty::$variant $({ $($field),* })? $(( $($tfield),* ))? = self {
                        $crate::common::variant(out, index, count);
                        $($( $crate::common::Encode::encode($field, out); )*)?
                        $($( $crate::common::Encode::encode($tfield, out); )*)?
                        return;
                    }
                    index += 1;
                )*
                unreachable!("every variant is listed");
            }
        }
    };
}
