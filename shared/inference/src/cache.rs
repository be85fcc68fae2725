//! Warm-container state: loaded models kept across requests (bounded in bytes, least recently
//! used out), one load per version however many requests wait for it, alias lookups cached for a
//! short TTL so a promotion takes effect within seconds, and a short memory of failed loads so a
//! broken version doesn't hammer the bucket.
//!
//! Every map here is bounded by size and by time: a request path whose keys come from URLs
//! (`/v2/models/x/versions/{n}` with a fresh `n` each time, any alias name) must not grow the
//! process. The maps are [moka](https://docs.rs/moka) caches: LRU by artifact bytes for models,
//! with single-flight loads (`try_get_with`), and TTL-and-count bounded for resolutions and
//! failures.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use maas_core::{ModelName, Version};
use maas_engine::LoadedModel;
use maas_models::ModelsError;
use maas_registry::{Registry, VersionSelector};
use moka::future::Cache;
use moka::policy::EvictionPolicy;
use tracing::{info, warn};

type LoadResult = Result<Arc<LoadedModel>, Arc<ModelsError>>;
type Key = (ModelName, Version);

/// Cache settings.
#[derive(Debug, Clone, Copy)]
pub struct CacheConfig {
    /// Most artifact bytes kept loaded at once.
    pub max_bytes: usize,
    /// How long an alias (or the default) resolution is trusted.
    pub alias_ttl: Duration,
    /// How long a failed load is remembered before it is tried again.
    pub failure_ttl: Duration,
    /// Most alias resolutions, and most failed loads, remembered at once (each is a few
    /// hundred bytes).
    pub max_remembered: u64,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            max_bytes: 1 << 30,
            alias_ttl: Duration::from_secs(5),
            failure_ttl: Duration::from_secs(10),
            max_remembered: 10_000,
        }
    }
}

/// Loaded models and alias resolutions of one process.
pub struct ModelCache {
    registry: Registry,
    config: CacheConfig,
    loaded: Cache<Key, Arc<LoadedModel>>,
    resolved: Cache<(ModelName, String), Version>,
    failed: Cache<Key, Arc<ModelsError>>,
    loads: Arc<AtomicU64>,
}

impl std::fmt::Debug for ModelCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelCache")
            .field("config", &self.config)
            .finish()
    }
}

impl ModelCache {
    /// An empty cache over `registry`.
    pub fn new(registry: Registry, config: CacheConfig) -> Self {
        let max_bytes = config.max_bytes.max(1) as u64;
        let loaded = Cache::builder()
            .max_capacity(max_bytes)
            // A model larger than the whole budget weighs the whole budget: it is kept (alone)
            // rather than reloaded on every request.
            .weigher(move |_key: &Key, model: &Arc<LoadedModel>| {
                (model.artifact_bytes() as u64)
                    .clamp(1, max_bytes)
                    .min(u64::from(u32::MAX)) as u32
            })
            // Plain LRU: a model just loaded is the one requests want, so it is always admitted.
            .eviction_policy(EvictionPolicy::lru())
            .eviction_listener(|key: Arc<Key>, model: Arc<LoadedModel>, cause| {
                if cause.was_evicted() {
                    info!(model = %key.0, version = %key.1, bytes = model.artifact_bytes(), "model evicted from cache");
                }
            })
            .build();
        let resolved = Cache::builder()
            .max_capacity(config.max_remembered)
            .time_to_live(config.alias_ttl)
            .build();
        let failed = Cache::builder()
            .max_capacity(config.max_remembered)
            .time_to_live(config.failure_ttl)
            .build();
        Self {
            registry,
            config,
            loaded,
            resolved,
            failed,
            loads: Arc::new(AtomicU64::new(0)),
        }
    }

    /// The registry models are loaded from.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Turns a selector into a version, trusting alias resolutions for the configured TTL.
    pub async fn resolve(
        &self,
        model: &ModelName,
        selector: &VersionSelector,
    ) -> Result<Version, ModelsError> {
        let key = match selector {
            VersionSelector::Version(v) => return Ok(*v),
            VersionSelector::Alias(alias) => format!("alias:{alias}"),
            VersionSelector::Default => "default".to_string(),
        };
        let cache_key = (model.clone(), key);
        if let Some(version) = self.resolved.get(&cache_key).await {
            return Ok(version);
        }
        let version = self.registry.resolve(model, selector).await?;
        self.resolved.insert(cache_key, version).await;
        Ok(version)
    }

    /// The loaded model for a version: from memory, by joining a load in progress, or by loading.
    pub async fn get(&self, model: &ModelName, version: Version) -> LoadResult {
        let key = (model.clone(), version);
        if let Some(loaded) = self.loaded.get(&key).await {
            return Ok(loaded);
        }
        if let Some(err) = self.failed.get(&key).await {
            return Err(err);
        }
        let registry = self.registry.clone();
        let loads = self.loads.clone();
        let (m, v) = key.clone();
        let result = self
            .loaded
            .try_get_with(key.clone(), async move {
                loads.fetch_add(1, Ordering::Relaxed);
                maas_models::load_version(&registry, &m, v)
                    .await
                    .map(Arc::new)
            })
            .await;
        if let Err(err) = &result {
            // Every waiter of the failed load gets the same error; filing it twice is harmless.
            warn!(model = %model, version = %version, error = %err, "model failed to load");
            self.failed.insert(key, err.clone()).await;
        }
        result
    }

    /// Versions currently loaded, with their sizes.
    pub async fn loaded(&self) -> Vec<(ModelName, Version, usize)> {
        self.loaded.run_pending_tasks().await;
        let mut out: Vec<_> = self
            .loaded
            .iter()
            .map(|(k, model)| (k.0.clone(), k.1, model.artifact_bytes()))
            .collect();
        out.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
        out
    }

    /// Entries held in each map (models, alias resolutions, failed loads), after pending
    /// evictions and expiries are applied: what the process holds for the request path.
    pub async fn entry_counts(&self) -> (u64, u64, u64) {
        self.loaded.run_pending_tasks().await;
        self.resolved.run_pending_tasks().await;
        self.failed.run_pending_tasks().await;
        (
            self.loaded.entry_count(),
            self.resolved.entry_count(),
            self.failed.entry_count(),
        )
    }

    /// How many loads have been started since the cache was created.
    pub fn loads_started(&self) -> u64 {
        self.loads.load(Ordering::Relaxed)
    }
}
