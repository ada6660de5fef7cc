//! Prometheus text exposition (format 0.0.4) of the running node, rendered
//! on scrape from the shared state: balancer atomics, per-reactor counters
//! summed, XDP per-CPU counters summed, reload counts. No lock is taken on
//! the request path; the scrape only reads atomics and BPF maps.

use std::fmt::Write;
use std::sync::atomic::Ordering;

use crate::mgmt::manager::Manager;

/// Escape a label value (backslash, quote, newline).
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

pub fn render(manager: &Manager) -> String {
    let mut out = String::with_capacity(8 * 1024);
    let snapshot = manager.control.snapshot.load_full();

    let _ = writeln!(
        out,
        "# HELP portier_backend_up 1 when the backend is in rotation, 0 when quarantined."
    );
    let _ = writeln!(out, "# TYPE portier_backend_up gauge");
    for app in &snapshot.apps {
        for b in app.balancer.backends() {
            let _ = writeln!(
                out,
                "portier_backend_up{{app=\"{}\",backend=\"{}\"}} {}",
                label(&app.name),
                b.addr,
                u8::from(!b.is_quarantined())
            );
        }
    }
    let _ = writeln!(
        out,
        "# HELP portier_backend_draining 1 when the backend gets no new requests."
    );
    let _ = writeln!(out, "# TYPE portier_backend_draining gauge");
    for app in &snapshot.apps {
        for b in app.balancer.backends() {
            let _ = writeln!(
                out,
                "portier_backend_draining{{app=\"{}\",backend=\"{}\"}} {}",
                label(&app.name),
                b.addr,
                u8::from(b.is_draining())
            );
        }
    }
    let _ = writeln!(
        out,
        "# HELP portier_backend_in_flight Requests a backend is serving now."
    );
    let _ = writeln!(out, "# TYPE portier_backend_in_flight gauge");
    for app in &snapshot.apps {
        for b in app.balancer.backends() {
            let _ = writeln!(
                out,
                "portier_backend_in_flight{{app=\"{}\",backend=\"{}\"}} {}",
                label(&app.name),
                b.addr,
                b.in_flight()
            );
        }
    }
    let _ = writeln!(
        out,
        "# HELP portier_backend_probes_total Quarantine probes made."
    );
    let _ = writeln!(out, "# TYPE portier_backend_probes_total counter");
    for app in &snapshot.apps {
        for b in app.balancer.backends() {
            let _ = writeln!(
                out,
                "portier_backend_probes_total{{app=\"{}\",backend=\"{}\"}} {}",
                label(&app.name),
                b.addr,
                b.probes.load(Ordering::Relaxed)
            );
        }
    }
    let _ = writeln!(
        out,
        "# HELP portier_app_requests_total Requests answered per app, by method class (read: GET/HEAD/OPTIONS, write: POST/PUT/PATCH/DELETE, other) and status class."
    );
    let _ = writeln!(out, "# TYPE portier_app_requests_total counter");
    for app in &snapshot.apps {
        for (m, method) in crate::snapshot::METHOD_CLASSES.iter().enumerate() {
            for (c, class) in crate::snapshot::STATUS_CLASSES.iter().enumerate() {
                let n = app.stats.responses[m][c].load(Ordering::Relaxed);
                if n > 0 {
                    let _ = writeln!(
                        out,
                        "portier_app_requests_total{{app=\"{}\",method=\"{method}\",status=\"{class}\"}} {n}",
                        label(&app.name)
                    );
                }
            }
        }
    }
    let _ = writeln!(
        out,
        "# HELP portier_queue_depth Requests waiting for a backend, per app."
    );
    let _ = writeln!(out, "# TYPE portier_queue_depth gauge");
    for app in &snapshot.apps {
        let _ = writeln!(
            out,
            "portier_queue_depth{{app=\"{}\"}} {}",
            label(&app.name),
            app.balancer.queue_depth()
        );
    }
    let _ = writeln!(
        out,
        "# HELP portier_reloads_total Configuration reloads by result."
    );
    let _ = writeln!(out, "# TYPE portier_reloads_total counter");
    let _ = writeln!(
        out,
        "portier_reloads_total{{result=\"ok\"}} {}",
        manager.reloads_ok.load(Ordering::Relaxed)
    );
    let _ = writeln!(
        out,
        "portier_reloads_total{{result=\"failed\"}} {}",
        manager.reloads_failed.load(Ordering::Relaxed)
    );
    if let Some(xdp) = &manager.xdp
        && let Ok(stats) = xdp.maps().stats()
    {
        let _ = writeln!(
            out,
            "# HELP portier_xdp_packets_total Packets seen by the XDP program, by verdict reason."
        );
        let _ = writeln!(out, "# TYPE portier_xdp_packets_total counter");
        for r in &stats.reasons {
            let _ = writeln!(
                out,
                "portier_xdp_packets_total{{reason=\"{}\",action=\"{}\"}} {}",
                r.reason, r.action, r.packets
            );
        }
        let _ = writeln!(
            out,
            "# HELP portier_xdp_bytes_total Bytes seen by the XDP program, by verdict reason."
        );
        let _ = writeln!(out, "# TYPE portier_xdp_bytes_total counter");
        for r in &stats.reasons {
            let _ = writeln!(
                out,
                "portier_xdp_bytes_total{{reason=\"{}\",action=\"{}\"}} {}",
                r.reason, r.action, r.bytes
            );
        }
    }
    if !manager.config.server.https.is_empty() {
        let _ = writeln!(
            out,
            "# HELP portier_certificate_expiry_timestamp_seconds notAfter of each certificate file, Unix time."
        );
        let _ = writeln!(
            out,
            "# TYPE portier_certificate_expiry_timestamp_seconds gauge"
        );
        for (name, not_after) in crate::mgmt::admin::certs::expiries(&manager.config.tls.cert_dir) {
            let _ = writeln!(
                out,
                "portier_certificate_expiry_timestamp_seconds{{certificate=\"{}\"}} {not_after}",
                label(&name)
            );
        }
    }
    if let Some(acme) = &manager.acme {
        render_acme(acme, &mut out);
    }
    if let Some(region) = &manager.region {
        let s = region.status();
        let _ = writeln!(
            out,
            "# HELP portier_region_connected 1 while this node is connected to etcd."
        );
        let _ = writeln!(out, "# TYPE portier_region_connected gauge");
        let _ = writeln!(out, "portier_region_connected {}", u8::from(s.connected));
        let _ = writeln!(
            out,
            "# HELP portier_region_revision The etcd revision this node has applied."
        );
        let _ = writeln!(out, "# TYPE portier_region_revision gauge");
        let _ = writeln!(out, "portier_region_revision {}", s.revision);
        let _ = writeln!(
            out,
            "# HELP portier_region_last_sync_timestamp_seconds Last read or watch event from etcd, Unix time."
        );
        let _ = writeln!(
            out,
            "# TYPE portier_region_last_sync_timestamp_seconds gauge"
        );
        let _ = writeln!(
            out,
            "portier_region_last_sync_timestamp_seconds {}",
            s.last_sync.unwrap_or(0)
        );
        let _ = writeln!(
            out,
            "# HELP portier_region_resyncs_total Full re-reads after the first (reconnects, compaction, etcd restored)."
        );
        let _ = writeln!(out, "# TYPE portier_region_resyncs_total counter");
        let _ = writeln!(out, "portier_region_resyncs_total {}", s.resyncs);
        let _ = writeln!(
            out,
            "# HELP portier_region_apply_seconds Applying the region's apps to this node (validation, snapshot rebuild, swap)."
        );
        let _ = writeln!(out, "# TYPE portier_region_apply_seconds summary");
        let _ = writeln!(
            out,
            "portier_region_apply_seconds_sum {}",
            s.apply_seconds_sum
        );
        let _ = writeln!(out, "portier_region_apply_seconds_count {}", s.applies);
        let _ = writeln!(
            out,
            "# HELP portier_region_last_apply_seconds How long the last apply of the region's apps took."
        );
        let _ = writeln!(out, "# TYPE portier_region_last_apply_seconds gauge");
        let _ = writeln!(
            out,
            "portier_region_last_apply_seconds {}",
            s.last_apply_seconds
        );
        let _ = writeln!(
            out,
            "# HELP portier_region_nodes Nodes registered in the region."
        );
        let _ = writeln!(out, "# TYPE portier_region_nodes gauge");
        let _ = writeln!(out, "portier_region_nodes {}", region.nodes().len());
    }
    crate::metrics::render_reactor_counters(&manager.control, &mut out);
    out
}

/// Orders by result, each name's state (one series per name, the current
/// state at 1) and its next attempt or renewal time.
fn render_acme(acme: &crate::mgmt::acme::Acme, out: &mut String) {
    let status = acme.status();
    let _ = writeln!(
        out,
        "# HELP portier_acme_orders_total ACME orders finished, by result."
    );
    let _ = writeln!(out, "# TYPE portier_acme_orders_total counter");
    let _ = writeln!(
        out,
        "portier_acme_orders_total{{result=\"issued\"}} {}",
        status.orders_issued
    );
    let _ = writeln!(
        out,
        "portier_acme_orders_total{{result=\"failed\"}} {}",
        status.orders_failed
    );
    let _ = writeln!(
        out,
        "# HELP portier_acme_certificate_state ACME state of each name (valid, pending, action_required, failed)."
    );
    let _ = writeln!(out, "# TYPE portier_acme_certificate_state gauge");
    for (name, r) in &status.book.names {
        let _ = writeln!(
            out,
            "portier_acme_certificate_state{{name=\"{}\",state=\"{}\"}} 1",
            label(name),
            r.phase.name()
        );
    }
    let _ = writeln!(
        out,
        "# HELP portier_acme_next_attempt_timestamp_seconds When each name is next ordered or renewed, Unix time."
    );
    let _ = writeln!(
        out,
        "# TYPE portier_acme_next_attempt_timestamp_seconds gauge"
    );
    for (name, r) in &status.book.names {
        let _ = writeln!(
            out,
            "portier_acme_next_attempt_timestamp_seconds{{name=\"{}\"}} {}",
            label(name),
            r.next_attempt
        );
    }
}
