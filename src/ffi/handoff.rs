//! `rsplib-handoff.h`, part 1: server-initiated session handoff (docs/handoff.md).
