use super::*;

/// An HTTP client (the process installs rustls' provider; a test does it here).
fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

fn settings(ratio: f64, parent_sampling: ParentSampling) -> TraceSettings {
    TraceSettings {
        endpoint: "http://127.0.0.1:9/v1/traces".into(),
        headers: Vec::new(),
        timeout: Duration::from_secs(1),
        ca_pem: None,
        sample_ratio: ratio,
        parent_sampling,
        include_subject: false,
        resource: vec![("service.name".into(), "sessiongate".into())],
        queue_size: 4,
        batch_size: 2,
        export_interval: Duration::from_secs(1),
    }
}

fn tracer(ratio: f64, parent_sampling: ParentSampling) -> (Arc<Tracer>, export::Exporter) {
    Tracer::new(
        &settings(ratio, parent_sampling),
        client(),
        crate::telemetry::metrics::Metrics::new().trace.clone(),
    )
}

const SAMPLED: &[u8] = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
const NOT_SAMPLED: &[u8] = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";

#[test]
fn a_sampled_flag_is_believed_only_from_whom_the_setting_names() {
    let (t, _e) = tracer(0.0, ParentSampling::TrustedProxies);
    let trusted = t.start([SAMPLED].into_iter(), || true);
    assert!(trusted.sampled);
    assert_eq!(
        trusted.parent,
        Some([0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7])
    );
    assert!(!t.start([NOT_SAMPLED].into_iter(), || true).sampled);
    // An untrusted client's trace is continued, its flag not followed (ratio 0: never).
    let client = t.start([SAMPLED].into_iter(), || false);
    assert!(!client.sampled);
    assert_eq!(client.trace_id, trusted.trace_id);
    let (everyone, _e) = tracer(0.0, ParentSampling::Everyone);
    assert!(everyone.start([SAMPLED].into_iter(), || false).sampled);
    let (nobody, _e) = tracer(1.0, ParentSampling::Nobody);
    assert!(nobody.start([NOT_SAMPLED].into_iter(), || true).sampled);
}

#[test]
fn an_unreadable_or_repeated_traceparent_starts_a_new_trace() {
    let (t, _e) = tracer(1.0, ParentSampling::Everyone);
    let upper = b"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01";
    for values in [vec![&upper[..]], vec![SAMPLED, SAMPLED]] {
        let r = t.start(values.into_iter(), || true);
        assert_eq!(r.parent, None);
        assert!(r.unreadable_parent());
        assert_ne!(r.trace_id[..], hex_id(SAMPLED)[..]);
    }
    let none = t.start(std::iter::empty(), || true);
    assert!(!none.unreadable_parent() && none.parent.is_none());
    assert_ne!(none.span_id, none.upstream_span_id);
}

fn hex_id(tp: &[u8]) -> [u8; 16] {
    parse_traceparent(tp).unwrap().trace_id
}

#[test]
fn the_ratio_holds_over_ten_thousand_roots() {
    let (t, _e) = tracer(0.1, ParentSampling::TrustedProxies);
    let n = 10_000;
    let sampled = (0..n)
        .filter(|_| t.start(std::iter::empty(), || false).sampled)
        .count();
    // Binomial(10000, 0.1): mean 1000, standard deviation 30; ±5 σ.
    assert!((850..=1150).contains(&sampled), "{sampled} of {n}");
    // A client that always sends sampled=1 is drawn for at the same ratio.
    let forced = (0..n)
        .filter(|_| t.start([SAMPLED].into_iter(), || false).sampled)
        .count();
    assert!((850..=1150).contains(&forced), "{forced} of {n}");
    let (never, _e) = tracer(0.0, ParentSampling::TrustedProxies);
    assert!(!(0..n).any(|_| never.start(std::iter::empty(), || false).sampled));
}

#[test]
fn a_full_queue_drops_and_counts() {
    let metrics = crate::telemetry::metrics::Metrics::new();
    let (t, _exporter) = Tracer::new(
        &settings(1.0, ParentSampling::Everyone),
        client(),
        metrics.trace.clone(),
    );
    for _ in 0..6 {
        t.submit(SpanData::default());
    }
    assert_eq!(metrics.trace.dropped_queue_full.get(), 2);
}

#[tokio::test]
async fn child_spans_exist_only_within_a_sampled_request() {
    let (t, mut exporter) = tracer(1.0, ParentSampling::Everyone);
    assert!(child("outside", SpanKind::Client).is_none());
    let r = t.start([SAMPLED].into_iter(), || true);
    within(t.parent_of(&r).unwrap(), async {
        let mut s = child("GET", SpanKind::Client).unwrap();
        s.attr("http.response.status_code", 200u16);
    })
    .await;
    let got = exporter_next(&mut exporter).await;
    assert_eq!(got.parent, Some(r.span_id));
    assert_eq!(got.trace_id, r.trace_id);
    assert!(got.end_unix_ns >= got.start_unix_ns && got.start_unix_ns > 0);
    let (off, _e) = tracer(0.0, ParentSampling::Nobody);
    let r = off.start(std::iter::empty(), || true);
    assert!(off.parent_of(&r).is_none());
}

async fn exporter_next(e: &mut export::Exporter) -> SpanData {
    e.next_for_test().await
}
