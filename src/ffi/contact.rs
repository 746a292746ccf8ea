//! `rsplib-handoff.h`, part 2: contact-node descriptor passing for plain clients
//! (docs/contact-node.md).
