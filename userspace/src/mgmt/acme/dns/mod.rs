//! DNS-01: writing, checking and removing `_acme-challenge` TXT records
//! for wildcard certificates (`[acme.dns]`). INTERFACE STUB: see the
//! helper's brief; the ACME service calls only what is declared here.
