//! Warm-container state: loaded models kept across requests (bounded in bytes, least recently
//! used out), one load per version however many requests wait for it, alias lookups cached for a
//! short TTL so a promotion takes effect within seconds, and a short memory of failed loads so a
//! broken version doesn't hammer the bucket.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use maas_core::{ModelName, Version};
use maas_engine::{EngineError, LoadedModel};
use maas_registry::{Registry, VersionSelector};
use tracing::{info, warn};

type LoadResult = Result<Arc<LoadedModel>, Arc<EngineError>>;
type Key = (ModelName, Version);

struct Entry {
    model: Arc<LoadedModel>,
    last_used: u64,
}

#[derive(Default)]
struct State {
    loaded: HashMap<Key, Entry>,
    bytes: usize,
    tick: u64,
    inflight: HashMap<Key, Shared<BoxFuture<'static, LoadResult>>>,
    resolved: HashMap<(ModelName, String), (Version, Instant)>,
    failed: HashMap<Key, (Arc<EngineError>, Instant)>,
    loads: u64,
}

/// Cache settings.
#[derive(Debug, Clone, Copy)]
pub struct CacheConfig {
    /// Most artifact bytes kept loaded at once.
    pub max_bytes: usize,
    /// How long an alias (or the default) resolution is trusted.
    pub alias_ttl: Duration,
    /// How long a failed load is remembered before it is tried again.
    pub failure_ttl: Duration,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            max_bytes: 1 << 30,
            alias_ttl: Duration::from_secs(5),
            failure_ttl: Duration::from_secs(10),
        }
    }
}

/// Loaded models and alias resolutions of one process.
pub struct ModelCache {
    registry: Registry,
    config: CacheConfig,
    state: Mutex<State>,
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
        Self {
            registry,
            config,
            state: Mutex::new(State::default()),
        }
    }

    /// The registry models are loaded from.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock can only come from a bug in this module's own
        // bookkeeping; the maps stay structurally valid, so keep serving.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Turns a selector into a version, trusting alias resolutions for the configured TTL.
    pub async fn resolve(
        &self,
        model: &ModelName,
        selector: &VersionSelector,
    ) -> Result<Version, EngineError> {
        let key = match selector {
            VersionSelector::Version(v) => return Ok(*v),
            VersionSelector::Alias(alias) => format!("alias:{alias}"),
            VersionSelector::Default => "default".to_string(),
        };
        let cache_key = (model.clone(), key);
        if let Some((version, at)) = self.state().resolved.get(&cache_key)
            && at.elapsed() < self.config.alias_ttl
        {
            return Ok(*version);
        }
        let version = self.registry.resolve(model, selector).await?;
        self.state()
            .resolved
            .insert(cache_key, (version, Instant::now()));
        Ok(version)
    }

    /// The loaded model for a version: from memory, by joining a load in progress, or by loading.
    pub async fn get(&self, model: &ModelName, version: Version) -> LoadResult {
        let key = (model.clone(), version);
        let future = {
            let mut state = self.state();
            state.tick += 1;
            let tick = state.tick;
            if let Some(entry) = state.loaded.get_mut(&key) {
                entry.last_used = tick;
                return Ok(entry.model.clone());
            }
            if let Some((err, at)) = state.failed.get(&key) {
                if at.elapsed() < self.config.failure_ttl {
                    return Err(err.clone());
                }
                state.failed.remove(&key);
            }
            match state.inflight.get(&key) {
                Some(shared) => shared.clone(),
                None => {
                    let registry = self.registry.clone();
                    let (m, v) = key.clone();
                    let fut: BoxFuture<'static, LoadResult> = async move {
                        LoadedModel::load_version(&registry, &m, v)
                            .await
                            .map(Arc::new)
                            .map_err(Arc::new)
                    }
                    .boxed();
                    let shared = fut.shared();
                    state.inflight.insert(key.clone(), shared.clone());
                    state.loads += 1;
                    shared
                }
            }
        };
        let result = future.await;
        let mut state = self.state();
        if state.inflight.remove(&key).is_some() {
            // First waiter to finish files the result; the others find it already filed.
            match &result {
                Ok(loaded) => self.insert(&mut state, key, loaded.clone()),
                Err(err) => {
                    warn!(model = %model, version = %version, error = %err, "model failed to load");
                    state.failed.insert(key, (err.clone(), Instant::now()));
                }
            }
        }
        result
    }

    fn insert(&self, state: &mut State, key: Key, model: Arc<LoadedModel>) {
        let size = model.artifact_bytes();
        state.tick += 1;
        let tick = state.tick;
        if let Some(old) = state.loaded.insert(
            key,
            Entry {
                model,
                last_used: tick,
            },
        ) {
            state.bytes -= old.model.artifact_bytes();
        }
        state.bytes += size;
        while state.bytes > self.config.max_bytes && state.loaded.len() > 1 {
            let Some(victim) = state
                .loaded
                .iter()
                .filter(|(_, e)| e.last_used != tick)
                .min_by_key(|(_, e)| e.last_used)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            if let Some(evicted) = state.loaded.remove(&victim) {
                state.bytes -= evicted.model.artifact_bytes();
                info!(model = %victim.0, version = %victim.1, bytes = evicted.model.artifact_bytes(), "model evicted from cache");
            }
        }
    }

    /// Versions currently loaded, with their sizes.
    pub fn loaded(&self) -> Vec<(ModelName, Version, usize)> {
        let state = self.state();
        let mut out: Vec<_> = state
            .loaded
            .iter()
            .map(|((m, v), e)| (m.clone(), *v, e.model.artifact_bytes()))
            .collect();
        out.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
        out
    }

    /// How many loads have been started since the cache was created.
    pub fn loads_started(&self) -> u64 {
        self.state().loads
    }
}
