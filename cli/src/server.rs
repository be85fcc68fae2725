//! The local server behind `maas serve` and `maas demo`: the inference router on a socket, plus
//! the watcher that scores files dropped under `batch/input/` of a local store.

use std::net::SocketAddr;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::{BatchWatch, CliError, ServeArgs};

/// A server started in this process.
pub(crate) struct RunningServer {
    /// Where it listens.
    pub addr: SocketAddr,
    stop: watch::Sender<bool>,
    served: JoinHandle<std::io::Result<()>>,
    watcher: Option<JoinHandle<()>>,
}

/// Starts serving `store` as `args` say; returns once the socket is bound and preloaded models
/// are loaded.
pub(crate) async fn start(store: &str, args: &ServeArgs) -> Result<RunningServer, CliError> {
    let mut config = maas_inference::InferenceConfig::from_lookup(|k| std::env::var(k).ok())?;
    config.store = store.to_string();
    config.preload = args
        .preload
        .iter()
        .map(|spec| maas_inference::PreloadSpec::parse(spec))
        .collect::<Result<_, _>>()?;
    let state = maas_inference::build_state(&config).await?;
    let listen_error = |e: std::io::Error| CliError::Listen {
        addr: args.addr,
        message: e.to_string(),
    };
    let listener = tokio::net::TcpListener::bind(args.addr)
        .await
        .map_err(listen_error)?;
    let addr = listener.local_addr().map_err(listen_error)?;
    tracing::info!(%addr, store = %config.store, "serving the Open Inference Protocol");
    let (stop, stop_rx) = watch::channel(false);
    let local = !matches!(
        maas_store::StoreUrl::parse(&config.store)?,
        maas_store::StoreUrl::S3 { .. }
    );
    let watcher = if args.batch_watch == BatchWatch::Always
        || (args.batch_watch == BatchWatch::Auto && local)
    {
        let interval = std::time::Duration::from_secs_f64(args.batch_interval.clamp(0.05, 3600.0));
        let scorer = maas_batch::BatchScorer::new(state.cache.registry().store().clone());
        let mut stop_rx = stop_rx.clone();
        eprintln!(
            "watching {}/batch/input/ every {:.1}s: files there are scored into batch/output/",
            config.store,
            interval.as_secs_f64()
        );
        Some(tokio::spawn(maas_batch::InputWatcher::new().run(
            scorer,
            interval,
            async move {
                let _ = stop_rx.wait_for(|stopped| *stopped).await;
            },
        )))
    } else {
        None
    };
    let mut stop_rx = stop_rx;
    let served = tokio::spawn(async move {
        axum::serve(listener, maas_inference::app(state))
            .with_graceful_shutdown(async move {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = stop_rx.wait_for(|stopped| *stopped) => {}
                }
            })
            .await
    });
    Ok(RunningServer {
        addr,
        stop,
        served,
        watcher,
    })
}

impl RunningServer {
    /// Serves until Ctrl-C, then stops the watcher after its current file.
    pub async fn until_ctrl_c(self) -> Result<(), CliError> {
        self.finish(false).await
    }

    /// Stops now (in-flight requests finish first).
    pub async fn stop(self) -> Result<(), CliError> {
        self.finish(true).await
    }

    async fn finish(self, now: bool) -> Result<(), CliError> {
        if now {
            let _ = self.stop.send(true);
        }
        let served = self.served.await;
        let _ = self.stop.send(true);
        if let Some(watcher) = self.watcher {
            let _ = watcher.await;
        }
        let error = |message: String| CliError::Listen {
            addr: self.addr,
            message,
        };
        served
            .map_err(|e| error(e.to_string()))?
            .map_err(|e| error(e.to_string()))
    }
}
