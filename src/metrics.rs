//! Prometheus metrics: request counts and latency histograms by interaction.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry, TextEncoder,
};

pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    latency: HistogramVec,
}

impl Metrics {
    #[expect(
        clippy::expect_used,
        reason = "constant metric definitions, checked at start-up"
    )]
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "huimin_http_requests_total",
                "HTTP requests by interaction and status",
            ),
            &["interaction", "status"],
        )
        .expect("valid counter");
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "huimin_http_request_duration_seconds",
                "HTTP request latency by interaction",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                10.0,
            ]),
            &["interaction"],
        )
        .expect("valid histogram");
        registry
            .register(Box::new(requests.clone()))
            .expect("register counter");
        registry
            .register(Box::new(latency.clone()))
            .expect("register histogram");
        Metrics {
            registry,
            requests,
            latency,
        }
    }

    pub fn observe(&self, interaction: &str, status: u16, seconds: f64) {
        self.requests
            .with_label_values(&[interaction, status_class(status)])
            .inc();
        self.latency
            .with_label_values(&[interaction])
            .observe(seconds);
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

fn status_class(s: u16) -> &'static str {
    match s {
        200 => "200",
        201 => "201",
        204 => "204",
        304 => "304",
        400 => "400",
        401 => "401",
        403 => "403",
        404 => "404",
        409 => "409",
        410 => "410",
        412 => "412",
        413 => "413",
        415 => "415",
        422 => "422",
        500 => "500",
        503 => "503",
        s if s < 300 => "2xx",
        s if s < 400 => "3xx",
        s if s < 500 => "4xx",
        _ => "5xx",
    }
}
