//! `tdtypes.h`: the fixed-width aliases classic programs use (`card8` … `card64`, `integer`,
//! `cardinal`). The C-only `bool` typedef and the `min`/`max` macros live in the header template.
#![allow(non_camel_case_types)]

pub type sbyte = i8;
pub type ubyte = u8;
pub type int8 = i8;
pub type card8 = u8;
pub type int16 = i16;
pub type card16 = u16;
pub type int32 = i32;
pub type integer = int32;
pub type card32 = u32;
pub type int64 = i64;
pub type card64 = u64;
pub type cardinal = card32;
