//! The request machine with a fake clock: queueing, every timeout, retries,
//! quarantine decisions, response shaping for HTTP/1.x and HTTP/2.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::*;
use crate::http::HttpError;
use crate::http::h1::{BodyKind, parse_response_head};
use crate::sched::balance::{Balancer, Pick};
use crate::sched::retry::{Cut, Verdict, after_cut};

const T: ExchangeTimeouts = ExchangeTimeouts {
    queue: Duration::from_secs(30),
    connect: Duration::from_secs(5),
    read: Duration::from_secs(60),
};

fn balancer(n: u16, max: u32) -> Arc<Balancer> {
    let addrs: Vec<SocketAddr> = (0..n)
        .map(|i| SocketAddr::from(([127, 0, 0, 1], 9000 + i)))
        .collect();
    let backoff = crate::sched::balance::Backoff {
        initial_ms: 1000,
        max_ms: 8000,
        stable_ms: 10_000,
    };
    Arc::new(Balancer::new(&addrs, max, 50, backoff))
}

fn exchange(b: &Arc<Balancer>, downstream: Downstream, gzip_ok: bool, now: Instant) -> Exchange {
    Exchange::new(Route {
        client: ConnId(1),
        downstream,
        started: now,
        app_stats: Default::default(),
        balancer: b.clone(),
        request: RequestFacts {
            method: "GET".into(),
            is_head: false,
            idempotent: true,
            upgrade: false,
            keep_alive: true,
            request_id: "rid".into(),
        },
        head: b"GET / HTTP/1.1\r\n\r\n".to_vec(),
        body: RequestBody::None,
        extras: ResponseExtras {
            hsts: None,
            sticky: None,
            preferred: None,
            secure: false,
            gzip_ok,
        },
        timeouts: T,
        log: None,
    })
}

fn h1() -> Downstream {
    Downstream::H1 { version: 1 }
}

#[test]
fn a_queued_request_times_out_at_its_queue_deadline_not_before() {
    let t0 = Instant::now();
    let b = balancer(1, 1);
    let mut ex = exchange(&b, h1(), false, t0);
    ex.try_attempt().expect("first attempt");
    let ticket = b.enqueue(0, 7).expect("room");
    ex.queued(ticket, t0);
    assert_eq!(ex.journey(), Journey::Queued(ticket));
    assert_eq!(ex.next_deadline(), Some(t0 + T.queue));
    assert_eq!(
        ex.handle_timeout(t0 + T.queue - Duration::from_millis(1)),
        None
    );
    assert_eq!(
        ex.handle_timeout(t0 + T.queue),
        Some(HttpError::QueueTimeout)
    );
    assert!(!ex.response_started());
    assert_eq!(ex.next_deadline(), None, "nothing else armed");
    assert_eq!(
        ex.ticket(),
        Some(ticket),
        "the caller still sees the queue place to leave"
    );
}

#[test]
fn a_grant_clears_the_queue_timer_and_starts_the_connect_timer() {
    let t0 = Instant::now();
    let b = balancer(1, 1);
    let mut ex = exchange(&b, h1(), false, t0);
    let ticket = b.enqueue(0, 7).expect("room");
    ex.queued(ticket, t0);
    let t1 = t0 + Duration::from_secs(3);
    ex.attached(BackendId(0), ConnId(9), true, t1);
    assert!(ex.is_connecting());
    assert_eq!(ex.next_deadline(), Some(t1 + T.connect));
    // The queue timer is gone: the connect timer is what fires.
    assert_eq!(
        ex.handle_timeout(t1 + T.connect - Duration::from_millis(1)),
        None
    );
    assert_eq!(
        ex.handle_timeout(t1 + T.connect),
        Some(HttpError::UpstreamConnectTimeout)
    );
}

#[test]
fn connected_then_silent_backend_is_a_read_timeout_and_progress_pushes_it() {
    let t0 = Instant::now();
    let b = balancer(1, 1);
    let mut ex = exchange(&b, h1(), false, t0);
    ex.attached(BackendId(0), ConnId(9), true, t0);
    ex.connected(t0 + Duration::from_millis(10));
    assert_eq!(
        ex.next_deadline(),
        Some(t0 + Duration::from_millis(10) + T.read)
    );
    let later = t0 + Duration::from_secs(50);
    ex.backend_progress(later);
    assert_eq!(
        ex.handle_timeout(t0 + T.read + Duration::from_millis(10)),
        None
    );
    assert_eq!(
        ex.handle_timeout(later + T.read),
        Some(HttpError::UpstreamReadTimeout)
    );
}

#[test]
fn a_pooled_connection_skips_connecting() {
    let t0 = Instant::now();
    let b = balancer(1, 1);
    let mut ex = exchange(&b, h1(), false, t0);
    ex.attached(BackendId(0), ConnId(3), false, t0);
    assert_eq!(
        ex.journey(),
        Journey::AwaitingHead {
            backend: BackendId(0),
            upstream: ConnId(3)
        }
    );
    assert_eq!(ex.next_deadline(), Some(t0 + T.read));
}

#[test]
fn a_cut_before_any_response_goes_back_for_another_pick_and_gives_up_eventually() {
    let t0 = Instant::now();
    let b = balancer(2, 10);
    let mut ex = exchange(&b, h1(), false, t0);
    let mut verdicts = Vec::new();
    loop {
        if let Err(e) = ex.try_attempt() {
            assert_eq!(e, HttpError::NoBackend);
            break;
        }
        let Pick::Backend(id) = b.pick(&ex.tried) else {
            break;
        };
        ex.attached(id, ConnId(5), true, t0);
        // The backend refuses the connection: nothing was written.
        let v = after_cut(Cut {
            written: 0,
            reused: false,
            idempotent: ex.route.request.idempotent,
            body_pending: !ex.route.body.is_done(),
            response_started: ex.response_started(),
        });
        verdicts.push(v);
        assert_eq!(ex.detach(), Some(id));
        b.release(id);
        assert_eq!(ex.journey(), Journey::Routed);
        ex.tried.push(id);
    }
    assert_eq!(verdicts, vec![Verdict::Retry { quarantine: true }; 2]);
    assert_eq!(b.pick(&ex.tried), Pick::AllDown, "both tried");
}

#[test]
fn after_the_response_started_a_cut_is_not_retried() {
    let t0 = Instant::now();
    let b = balancer(1, 1);
    let mut ex = exchange(&b, h1(), false, t0);
    ex.attached(BackendId(0), ConnId(3), false, t0);
    let (mut head, _) = parse_response_head(
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n",
        &Default::default(),
        false,
    )
    .expect("valid")
    .expect("whole");
    ex.begin_response(&mut head, t0, 1024, 6);
    assert!(ex.response_started());
    let v = after_cut(Cut {
        written: 20,
        reused: false,
        idempotent: true,
        body_pending: false,
        response_started: ex.response_started(),
    });
    assert_eq!(v, Verdict::Abort);
    // A read timeout mid-body is a cut, and the machine remembers that.
    assert_eq!(
        ex.handle_timeout(t0 + T.read),
        Some(HttpError::UpstreamReadTimeout)
    );
    assert!(ex.response_started());
}

#[test]
fn h2_responses_always_take_the_payload_and_h1_passes_framing_through() {
    let t0 = Instant::now();
    let b = balancer(1, 1);
    let text = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: image/png\r\n\r\n";
    let mut ex1 = exchange(&b, h1(), true, t0);
    ex1.attached(BackendId(0), ConnId(3), false, t0);
    let (mut head, _) = parse_response_head(text, &Default::default(), false)
        .expect("ok")
        .expect("whole");
    assert_eq!(ex1.begin_response(&mut head, t0, 10, 6), BodyKind::Chunked);
    assert!(matches!(ex1.out, OutMode::Raw));

    let mut ex2 = exchange(&b, Downstream::H2(H2Stream::new(1)), false, t0);
    ex2.attached(BackendId(0), ConnId(3), false, t0);
    let (mut head, _) = parse_response_head(text, &Default::default(), false)
        .expect("ok")
        .expect("whole");
    assert_eq!(ex2.begin_response(&mut head, t0, 10, 6), BodyKind::Chunked);
    assert!(matches!(ex2.out, OutMode::Payload { chunked: false }));
    assert_eq!(ex2.stream(), Some(1));
}

#[test]
fn http10_clients_get_chunked_responses_close_delimited_and_gzip_rewrites_the_head() {
    let t0 = Instant::now();
    let b = balancer(1, 1);
    let mut ex = exchange(&b, Downstream::H1 { version: 0 }, false, t0);
    ex.attached(BackendId(0), ConnId(3), false, t0);
    let (mut head, _) = parse_response_head(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
        &Default::default(),
        false,
    )
    .expect("ok")
    .expect("whole");
    ex.begin_response(&mut head, t0, 10, 6);
    assert_eq!(head.body, BodyKind::CloseDelimited);

    let mut gz = exchange(&b, h1(), true, t0);
    gz.attached(BackendId(0), ConnId(3), false, t0);
    let (mut head, _) = parse_response_head(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 5000\r\n\r\n",
        &Default::default(),
        false,
    )
    .expect("ok")
    .expect("whole");
    assert_eq!(
        gz.begin_response(&mut head, t0, 10, 6),
        BodyKind::Length(5000)
    );
    assert_eq!(
        head.body,
        BodyKind::Chunked,
        "re-framed for the compressed body"
    );
    assert!(matches!(gz.out, OutMode::Gzip { .. }));
    let extras = gz.response_extras();
    assert_eq!(extras.pairs()[..], [("X-Request-ID", &b"rid"[..])]);
}

#[test]
fn errors_stick() {
    let t0 = Instant::now();
    let b = balancer(1, 1);
    let mut ex = exchange(&b, h1(), false, t0);
    assert_eq!(ex.fail(HttpError::QueueFull), HttpError::QueueFull);
    assert_eq!(ex.fail(HttpError::NoBackend), HttpError::QueueFull);
}

#[test]
fn response_fields_come_in_order_and_all_fit() {
    let all = ResponseFields {
        request_id: "rid",
        hsts: Some("max-age=63072000"),
        cookie: Some("portier_sticky=b1; Path=/".to_string()),
    };
    let pairs = all.pairs();
    assert_eq!(
        pairs[..],
        [
            ("X-Request-ID", &b"rid"[..]),
            ("Strict-Transport-Security", &b"max-age=63072000"[..]),
            ("Set-Cookie", &b"portier_sticky=b1; Path=/"[..]),
        ]
    );
    let cookie_only = ResponseFields {
        request_id: "r",
        hsts: None,
        cookie: Some("c=1".to_string()),
    };
    assert_eq!(
        cookie_only.pairs()[..],
        [("X-Request-ID", &b"r"[..]), ("Set-Cookie", &b"c=1"[..])]
    );
}
