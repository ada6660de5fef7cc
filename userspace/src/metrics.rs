//! Per-reactor request counters: each reactor thread writes only its own
//! shard (relaxed atomics, no sharing of cache lines between threads), the
//! scrape sums the shards. Names and labels of the exposition live here.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::control::Control;
use crate::proxy_protocol::{Rejected, Version};

/// Upper bounds (seconds) of the request latency histogram.
pub const LATENCY_BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

/// Counters of one reactor thread.
#[derive(Default)]
#[repr(align(128))]
pub struct ReactorCounters {
    /// Responses by status class: 1xx..5xx (index 1..=5), other (0).
    pub responses: [AtomicU64; 6],
    /// Requests served over HTTP/1.x and HTTP/2.
    pub http1_requests: AtomicU64,
    pub http2_requests: AtomicU64,
    pub http2_streams_reset: AtomicU64,
    /// HTTP/2 streams reset because their send window stayed shut.
    pub http2_streams_stalled: AtomicU64,
    /// HTTP/2 requests that ended (reset by either side, or refused) in
    /// the input that opened them, before any backend was asked (rapid
    /// reset, MadeYouReset).
    pub http2_resets_before_dispatch: AtomicU64,
    pub http2_goaways: AtomicU64,
    /// Latency histogram (cumulative on render), plus sum in microseconds.
    pub latency_buckets: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    pub latency_sum_us: AtomicU64,
    pub tls_handshakes_tls12: AtomicU64,
    pub tls_handshakes_tls13: AtomicU64,
    pub tls_handshakes_resumed: AtomicU64,
    /// ClientHellos whose SNI was an IP address / not a valid host name.
    pub tls_bad_sni_ip: AtomicU64,
    pub tls_bad_sni_invalid: AtomicU64,
    pub connections_accepted: AtomicU64,
    /// PROXY protocol headers taken, by version (`proxy_protocol::Version`).
    pub proxy_accepted: [AtomicU64; 2],
    /// Connections refused by PROXY protocol listeners, by reason
    /// (`proxy_protocol::Rejected`).
    pub proxy_rejected: [AtomicU64; 5],
}

impl ReactorCounters {
    pub fn response(&self, status: u16, latency_us: u64) {
        let class = match status {
            100..=599 => (status / 100) as usize,
            _ => 0,
        };
        self.responses[class].fetch_add(1, Ordering::Relaxed);
        let secs = latency_us as f64 / 1e6;
        let bucket = LATENCY_BUCKETS
            .iter()
            .position(|&b| secs <= b)
            .unwrap_or(LATENCY_BUCKETS.len());
        self.latency_buckets[bucket].fetch_add(1, Ordering::Relaxed);
        self.latency_sum_us.fetch_add(latency_us, Ordering::Relaxed);
    }
}

fn sum(control: &Control, f: impl Fn(&ReactorCounters) -> u64) -> u64 {
    control.counters.iter().map(f).sum()
}

pub fn render_reactor_counters(control: &Control, out: &mut String) {
    let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let _ = writeln!(
        out,
        "# HELP portier_responses_total Responses sent, by status class."
    );
    let _ = writeln!(out, "# TYPE portier_responses_total counter");
    for (i, class) in ["other", "1xx", "2xx", "3xx", "4xx", "5xx"]
        .iter()
        .enumerate()
    {
        let _ = writeln!(
            out,
            "portier_responses_total{{class=\"{class}\"}} {}",
            sum(control, |c| load(&c.responses[i]))
        );
    }
    let _ = writeln!(out, "# HELP portier_requests_total Requests by protocol.");
    let _ = writeln!(out, "# TYPE portier_requests_total counter");
    let _ = writeln!(
        out,
        "portier_requests_total{{protocol=\"http/1.1\"}} {}",
        sum(control, |c| load(&c.http1_requests))
    );
    let _ = writeln!(
        out,
        "portier_requests_total{{protocol=\"h2\"}} {}",
        sum(control, |c| load(&c.http2_requests))
    );
    let _ = writeln!(
        out,
        "# HELP portier_http2_streams_reset_total HTTP/2 streams reset (by either side)."
    );
    let _ = writeln!(out, "# TYPE portier_http2_streams_reset_total counter");
    let _ = writeln!(
        out,
        "portier_http2_streams_reset_total {}",
        sum(control, |c| load(&c.http2_streams_reset))
    );
    let _ = writeln!(
        out,
        "# HELP portier_http2_resets_before_dispatch_total HTTP/2 requests that ended (reset by either side, or refused) in the same input that opened them, dropped before any backend was asked."
    );
    let _ = writeln!(
        out,
        "# TYPE portier_http2_resets_before_dispatch_total counter"
    );
    let _ = writeln!(
        out,
        "portier_http2_resets_before_dispatch_total {}",
        sum(control, |c| load(&c.http2_resets_before_dispatch))
    );
    let _ = writeln!(
        out,
        "# HELP portier_http2_streams_stalled_total HTTP/2 streams reset because the client kept their send window shut past limits.h2_stall_timeout_ms."
    );
    let _ = writeln!(out, "# TYPE portier_http2_streams_stalled_total counter");
    let _ = writeln!(
        out,
        "portier_http2_streams_stalled_total {}",
        sum(control, |c| load(&c.http2_streams_stalled))
    );
    let _ = writeln!(
        out,
        "# HELP portier_http2_goaways_total GOAWAY frames sent."
    );
    let _ = writeln!(out, "# TYPE portier_http2_goaways_total counter");
    let _ = writeln!(
        out,
        "portier_http2_goaways_total {}",
        sum(control, |c| load(&c.http2_goaways))
    );
    let _ = writeln!(
        out,
        "# HELP portier_request_duration_seconds Time from the first byte of a request to the end of its response."
    );
    let _ = writeln!(out, "# TYPE portier_request_duration_seconds histogram");
    let mut cumulative = 0;
    for (i, b) in LATENCY_BUCKETS.iter().enumerate() {
        cumulative += sum(control, |c| load(&c.latency_buckets[i]));
        let _ = writeln!(
            out,
            "portier_request_duration_seconds_bucket{{le=\"{b}\"}} {cumulative}"
        );
    }
    cumulative += sum(control, |c| load(&c.latency_buckets[LATENCY_BUCKETS.len()]));
    let _ = writeln!(
        out,
        "portier_request_duration_seconds_bucket{{le=\"+Inf\"}} {cumulative}"
    );
    let _ = writeln!(
        out,
        "portier_request_duration_seconds_sum {}",
        sum(control, |c| load(&c.latency_sum_us)) as f64 / 1e6
    );
    let _ = writeln!(out, "portier_request_duration_seconds_count {cumulative}");
    let _ = writeln!(
        out,
        "# HELP portier_tls_handshakes_total Completed TLS handshakes by version and resumption."
    );
    let _ = writeln!(out, "# TYPE portier_tls_handshakes_total counter");
    let _ = writeln!(
        out,
        "portier_tls_handshakes_total{{version=\"1.2\"}} {}",
        sum(control, |c| load(&c.tls_handshakes_tls12))
    );
    let _ = writeln!(
        out,
        "portier_tls_handshakes_total{{version=\"1.3\"}} {}",
        sum(control, |c| load(&c.tls_handshakes_tls13))
    );
    let _ = writeln!(
        out,
        "# HELP portier_tls_resumed_total TLS handshakes that resumed a session."
    );
    let _ = writeln!(out, "# TYPE portier_tls_resumed_total counter");
    let _ = writeln!(
        out,
        "portier_tls_resumed_total {}",
        sum(control, |c| load(&c.tls_handshakes_resumed))
    );
    let _ = writeln!(
        out,
        "# HELP portier_tls_bad_sni_total ClientHellos whose SNI was an IP address (the default certificate serves) or not a valid host name (the handshake is refused)."
    );
    let _ = writeln!(out, "# TYPE portier_tls_bad_sni_total counter");
    let _ = writeln!(
        out,
        "portier_tls_bad_sni_total{{kind=\"ip_address\"}} {}",
        sum(control, |c| load(&c.tls_bad_sni_ip))
    );
    let _ = writeln!(
        out,
        "portier_tls_bad_sni_total{{kind=\"invalid\"}} {}",
        sum(control, |c| load(&c.tls_bad_sni_invalid))
    );
    let _ = writeln!(
        out,
        "# HELP portier_connections_accepted_total Client connections accepted."
    );
    let _ = writeln!(out, "# TYPE portier_connections_accepted_total counter");
    let _ = writeln!(
        out,
        "portier_connections_accepted_total {}",
        sum(control, |c| load(&c.connections_accepted))
    );
    let _ = writeln!(
        out,
        "# HELP portier_proxy_protocol_headers_total PROXY protocol headers accepted, by version."
    );
    let _ = writeln!(out, "# TYPE portier_proxy_protocol_headers_total counter");
    for v in Version::ALL {
        let _ = writeln!(
            out,
            "portier_proxy_protocol_headers_total{{version=\"{}\"}} {}",
            v.label(),
            sum(control, |c| load(&c.proxy_accepted[v.index()]))
        );
    }
    let _ = writeln!(
        out,
        "# HELP portier_proxy_protocol_rejected_total Connections closed by PROXY protocol listeners before any request, by reason."
    );
    let _ = writeln!(out, "# TYPE portier_proxy_protocol_rejected_total counter");
    for r in Rejected::ALL {
        let _ = writeln!(
            out,
            "portier_proxy_protocol_rejected_total{{reason=\"{}\"}} {}",
            r.label(),
            sum(control, |c| load(&c.proxy_rejected[r.index()]))
        );
    }
}
