//! Automatic certificates (SPEC §5, `[acme]`): the ACME service on the
//! management runtime. Reactors never talk to the CA; they only answer
//! HTTP-01 challenges from the token table published in `control`.

pub mod dns;
