//! Embeds the XDP object built by `cargo xtask build` into the binary.
//!
//! The object is looked for at `PORTIER_XDP_OBJECT` or at
//! `target/xdp/bpfel-unknown-none/release/portier-xdp`. Without it the binary
//! still builds (so `cargo check`/`clippy` work on stable alone) and runs
//! without XDP, saying so at start.

use std::path::PathBuf;

fn main() {
    println!("cargo::rustc-check-cfg=cfg(portier_xdp)");
    println!("cargo::rerun-if-env-changed=PORTIER_XDP_OBJECT");
    let object = match std::env::var_os("PORTIER_XDP_OBJECT") {
        Some(p) => PathBuf::from(p),
        None => {
            let manifest =
                PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
            manifest.join("../target/xdp/bpfel-unknown-none/release/portier-xdp")
        }
    };
    println!("cargo::rerun-if-changed={}", object.display());
    if object.is_file() {
        println!("cargo::rustc-cfg=portier_xdp");
        println!("cargo::rustc-env=PORTIER_XDP_OBJECT={}", object.display());
    } else {
        println!(
            "cargo::warning=XDP object not found at {}; building portier without XDP (run `cargo xtask build`)",
            object.display()
        );
    }
}
