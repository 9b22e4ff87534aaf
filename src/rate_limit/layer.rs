use super::{IpRange, KeyExtractor, PeerIp, RateLimit};
use governor::{
    DefaultKeyedRateLimiter, Quota, RateLimiter, clock::DefaultClock, middleware::StateInformationMiddleware,
    state::keyed::DefaultKeyedStateStore,
};
use std::{
    net::IpAddr,
    num::NonZeroU32,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};
use tower_layer::Layer;

pub(crate) type RequestLimiter<K> = RateLimiter<K, DefaultKeyedStateStore<K>, DefaultClock, StateInformationMiddleware>;

/// The limiters shared by every clone of a [`RateLimit`] service.
#[derive(Debug)]
pub(crate) struct Limiters<K: KeyExtractor> {
    pub(crate) keys: K,
    pub(crate) requests: Option<(Quota, RequestLimiter<K::Key>)>,
    pub(crate) bytes: Option<(NonZeroU32, DefaultKeyedRateLimiter<K::Key>)>,
    purge_every: Duration,
    last_purge: AtomicU64,
}

impl<K: KeyExtractor> Limiters<K> {
    /// Drops the state of keys that have been idle long enough to be back at full quota.
    pub(crate) fn purge_if_due(&self) {
        static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
        let now = EPOCH.get_or_init(Instant::now).elapsed().as_nanos() as u64;
        let last = self.last_purge.load(Ordering::Relaxed);
        if now.saturating_sub(last) < self.purge_every.as_nanos() as u64
            || self.last_purge.compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).is_err()
        {
            return;
        }
        if let Some((_, l)) = &self.requests {
            l.retain_recent();
            l.shrink_to_fit();
        }
        if let Some((_, l)) = &self.bytes {
            l.retain_recent();
            l.shrink_to_fit();
        }
    }

    /// How many clients have state (for tests and metrics).
    pub(crate) fn tracked(&self) -> usize {
        self.requests.as_ref().map_or(0, |(_, l)| l.len()).max(self.bytes.as_ref().map_or(0, |(_, l)| l.len()))
    }
}

/// Applies [`RateLimit`]: build it with [`per_second`](Self::per_second) and the builder
/// methods. Clones share their limiters (the state is behind an `Arc`), so one layer used on
/// several routes enforces one quota across them.
#[derive(Debug)]
pub struct RateLimitLayer<K: KeyExtractor = PeerIp> {
    limiters: Arc<Limiters<K>>,
    request_quota: Option<Quota>,
    byte_rate: Option<NonZeroU32>,
    byte_burst: Option<NonZeroU32>,
}

impl<K: KeyExtractor> Clone for RateLimitLayer<K> {
    fn clone(&self) -> Self {
        Self {
            limiters: self.limiters.clone(),
            request_quota: self.request_quota,
            byte_rate: self.byte_rate,
            byte_burst: self.byte_burst,
        }
    }
}

impl RateLimitLayer<PeerIp> {
    /// At most `requests` requests per second per client (a burst of `requests`).
    ///
    /// # Panics
    /// If `requests` is 0.
    pub fn per_second(requests: u32) -> Self {
        let quota = Quota::per_second(NonZeroU32::new(requests).expect("a rate of at least one request per second"));
        Self::build(PeerIp::default(), Some(quota), None, None, Duration::from_secs(60))
    }

    /// No request quota; use [`bytes_per_second`](Self::bytes_per_second) alone.
    pub fn unlimited_requests() -> Self {
        Self::build(PeerIp::default(), None, None, None, Duration::from_secs(60))
    }

    /// No limits at all: the layer passes requests through untouched.
    pub fn disabled() -> Self {
        Self::build(PeerIp::default(), None, None, None, Duration::from_secs(60))
    }

    /// Believes the forwarding header (`X-Forwarded-For` by default) only from these proxies,
    /// in addition to those trusted before. See [`PeerIp`].
    pub fn trusted_proxies(self, proxies: impl IntoIterator<Item = IpAddr>) -> Self {
        self.trusted_ranges(proxies.into_iter().map(IpRange::from))
    }

    /// Believes the forwarding header from proxies in these networks (`"10.0.0.0/8".parse()`),
    /// in addition to those trusted before.
    pub fn trusted_ranges(self, ranges: impl IntoIterator<Item = IpRange>) -> Self {
        let keys = self.limiters.keys.clone().trust(ranges);
        self.key_extractor(keys)
    }

    /// The header trusted proxies record the client in (default `X-Forwarded-For`; e.g.
    /// `Forwarded` or `X-Real-IP`). No other header is read. See [`PeerIp::forwarded_header`].
    pub fn forwarded_header(self, name: http::HeaderName) -> Self {
        let keys = self.limiters.keys.clone().forwarded_header(name);
        self.key_extractor(keys)
    }

    /// How many leading bits of an IPv6 client address make its key (default 64).
    ///
    /// # Panics
    /// If `bits` is over 128.
    pub fn ipv6_prefix(self, bits: u8) -> Self {
        let keys = self.limiters.keys.clone().ipv6_prefix(bits);
        self.key_extractor(keys)
    }
}

impl<K: KeyExtractor> RateLimitLayer<K> {
    fn build(
        keys: K,
        requests: Option<Quota>,
        byte_rate: Option<NonZeroU32>,
        byte_burst: Option<NonZeroU32>,
        purge_every: Duration,
    ) -> Self {
        let bytes_quota = byte_rate.map(|rate| {
            let burst = byte_burst.unwrap_or(rate);
            (burst, Quota::per_second(rate).allow_burst(burst))
        });
        Self {
            limiters: Arc::new(Limiters {
                keys,
                requests: requests.map(|q| (q, RateLimiter::dashmap(q).with_middleware::<StateInformationMiddleware>())),
                bytes: bytes_quota.map(|(burst, q)| (burst, RateLimiter::dashmap(q))),
                purge_every,
                last_purge: AtomicU64::new(0),
            }),
            request_quota: requests,
            byte_rate,
            byte_burst,
        }
    }

    fn rebuild<K2: KeyExtractor>(self, keys: K2) -> RateLimitLayer<K2> {
        let purge_every = self.limiters.purge_every;
        RateLimitLayer::build(keys, self.request_quota, self.byte_rate, self.byte_burst, purge_every)
    }

    /// Allows bursts of `requests` above the steady rate.
    ///
    /// # Panics
    /// If `requests` is 0.
    pub fn burst(mut self, requests: u32) -> Self {
        let burst = NonZeroU32::new(requests).expect("a burst of at least one request");
        self.request_quota = self.request_quota.map(|q| q.allow_burst(burst));
        let keys = self.limiters.keys.clone();
        self.rebuild(keys)
    }

    /// Slows each client's request bodies to `bytes` per second (summed over its concurrent
    /// requests), with bursts of up to one second's worth unless [`byte_burst`](Self::byte_burst)
    /// says otherwise. Bodies wait; they never fail for being fast.
    ///
    /// # Panics
    /// If `bytes` is 0.
    pub fn bytes_per_second(mut self, bytes: u32) -> Self {
        self.byte_rate = Some(NonZeroU32::new(bytes).expect("a rate of at least one byte per second"));
        let keys = self.limiters.keys.clone();
        self.rebuild(keys)
    }

    /// The largest burst of body bytes let through at once.
    ///
    /// # Panics
    /// If `bytes` is 0.
    pub fn byte_burst(mut self, bytes: u32) -> Self {
        self.byte_burst = Some(NonZeroU32::new(bytes).expect("a burst of at least one byte"));
        let keys = self.limiters.keys.clone();
        self.rebuild(keys)
    }

    /// How often idle clients are forgotten (default 60 s).
    pub fn purge_every(self, every: Duration) -> Self {
        let keys = self.limiters.keys.clone();
        let mut layer = self.rebuild(keys);
        Arc::get_mut(&mut layer.limiters).expect("freshly built").purge_every = every;
        layer
    }

    /// Keys requests with another extractor (API key, tenant, ...).
    pub fn key_extractor<K2: KeyExtractor>(self, keys: K2) -> RateLimitLayer<K2> {
        self.rebuild(keys)
    }

    /// How many clients currently have rate-limit state.
    pub fn tracked_clients(&self) -> usize {
        self.limiters.tracked()
    }

    /// Wraps `inner` (a shorthand for `Layer::layer`).
    pub fn layer_service<S>(&self, inner: S) -> RateLimit<S, K> {
        self.layer(inner)
    }
}

impl<S, K: KeyExtractor> Layer<S> for RateLimitLayer<K> {
    type Service = RateLimit<S, K>;

    fn layer(&self, inner: S) -> Self::Service {
        RateLimit::new(inner, self.limiters.clone())
    }
}
