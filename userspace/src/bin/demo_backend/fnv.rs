//! FNV-1a 64: the hash the echo reports of a request body (`body_fnv`), so
//! tests can check a body arrived intact without the backend buffering it.
//!
//! Owns: [`Fnv1a`], fed incrementally. Must not: be used where a
//! cryptographic or DoS-resistant hash is needed. Fed by: `Conn::read_body`.
//! Emits: 64-bit hashes, shown as 16 hex digits.

/// FNV-1a, 64 bits.
pub struct Fnv1a(pub u64);

impl Fnv1a {
    pub fn new() -> Self {
        Fnv1a(0xcbf2_9ce4_8422_2325)
    }

    pub fn update(&mut self, data: &[u8]) {
        for &b in data {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
}

/// FNV-1a 64 of `data`, as the echo's `body_fnv` reports it (16 hex digits).
#[cfg(test)]
pub fn fnv1a_hex(data: &[u8]) -> String {
    let mut fnv = Fnv1a::new();
    fnv.update(data);
    format!("{:016x}", fnv.0)
}
