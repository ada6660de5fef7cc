//! Health probes of quarantined backends (SPEC §3 Scheduling): a TCP connect
//! with exponential backoff per backend; the first success puts it back in
//! rotation. Runs on the management runtime; talks to the reactors only
//! through the balancers' atomics.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::control::Control;

/// How often due probes are looked for.
const TICK: Duration = Duration::from_millis(100);
/// A probe connect waits at most this long.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

pub async fn run(control: Arc<Control>) {
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let snapshot = control.snapshot.load_full();
        let now_ms = control.now_ms(Instant::now());
        for app in &snapshot.apps {
            for id in app.balancer.due_probes(now_ms) {
                let Some(addr) = app.balancer.backend(id).map(|b| b.addr) else {
                    continue;
                };
                let balancer = app.balancer.clone();
                let control = control.clone();
                let name = app.name.clone();
                tokio::spawn(async move {
                    let ok = matches!(
                        tokio::time::timeout(PROBE_TIMEOUT, tokio::net::TcpStream::connect(addr))
                            .await,
                        Ok(Ok(_))
                    );
                    let now_ms = control.now_ms(Instant::now());
                    balancer.probe_result(id, ok, now_ms);
                    if ok {
                        // Capacity came back: requests waiting in the
                        // app's queue get it, oldest first.
                        control.deliver(balancer.serve_queue(), None);
                        tracing::info!(app = %name, backend = %addr, "backend back in rotation");
                    } else {
                        tracing::debug!(app = %name, backend = %addr, next_ms = ?balancer.backoff_ms(id), "probe failed");
                    }
                });
            }
        }
    }
}
