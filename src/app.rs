//! The composition root: opens the store, builds the upstreams and the registry, runs the
//! server, and shuts it down cleanly.

use crate::config::Config;
use crate::http::handlers::Handler;
use crate::http::server;
use crate::registry::Registry;
use crate::store::Store;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A running Wharf: its addresses and the handle to stop it.
pub struct Running {
    pub addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub registry: Arc<Registry>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl Running {
    /// Stops accepting, drains open connections, and waits for the server to end.
    pub async fn shutdown(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        let _ = (&mut self.task).await;
    }

    /// Waits until the server ends (it ends only when shut down).
    pub async fn wait(mut self) {
        let _ = (&mut self.task).await;
    }

    /// A sender that triggers shutdown.
    pub fn take_stop(&mut self) -> Option<oneshot::Sender<()>> {
        self.stop.take()
    }
}

/// Builds everything from `config` and starts serving on its `listen` address.
pub async fn start(config: Config) -> Result<Running, String> {
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", config.listen))?;
    start_on(config, listener).await
}

/// As [`start`], on a listener the caller bound (tests bind port 0).
pub async fn start_on(config: Config, listener: TcpListener) -> Result<Running, String> {
    let addr = listener
        .local_addr()
        .map_err(|e| format!("listener address: {e}"))?;
    let data_dir = config.data_dir.clone();
    let store = tokio::task::spawn_blocking(move || Store::open(&data_dir))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| {
            format!(
                "cannot open the cache in {}: {e}",
                config.data_dir.display()
            )
        })?;
    let names: Vec<String> = config.upstreams.iter().map(|u| u.name.clone()).collect();
    let metrics = Arc::new(crate::metrics::Metrics::new(&names, config.cache.max_size));
    let registry = Arc::new(Registry::new(&config, Arc::new(store), metrics)?);
    let admin = TcpListener::bind(config.admin_listen).await.map_err(|e| {
        format!(
            "cannot listen on {} (admin_listen): {e}",
            config.admin_listen
        )
    })?;
    let admin_addr = admin
        .local_addr()
        .map_err(|e| format!("admin listener address: {e}"))?;
    let ready: crate::http::admin::Ready = Default::default();
    let tls = match &config.tls {
        None => None,
        Some(t) => Some(Arc::new(crate::http::tls::Reloadable::new(
            &t.cert_file,
            &t.key_file,
        )?)),
    };
    let acceptor = match &tls {
        None => None,
        Some(certs) => Some(crate::http::tls::acceptor(certs.clone())?),
    };
    if let Some(certs) = tls.clone() {
        // SIGHUP re-reads the certificate; open connections keep theirs.
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            Ok(mut hup) => {
                tokio::spawn(async move {
                    while hup.recv().await.is_some() {
                        match certs.reload() {
                            Ok(()) => tracing::info!("TLS certificate reloaded"),
                            Err(e) => tracing::error!(
                                "TLS certificate not reloaded, keeping the old one: {e}"
                            ),
                        }
                    }
                });
            }
            Err(e) => tracing::warn!("cannot watch SIGHUP: {e}"),
        }
    }
    let handler = Arc::new(Handler {
        tls: acceptor.is_some(),
        registry: registry.clone(),
        sessions: Arc::new(crate::auth::Sessions::new(config.auth.token_ttl)),
    });
    let (stop, stopped) = oneshot::channel::<()>();
    let (admin_stop, admin_stopped) = oneshot::channel::<()>();
    let admin_task = tokio::spawn(crate::http::admin::serve(
        admin,
        registry.clone(),
        ready.clone(),
        server::Limits::admin(&config.connections),
        async {
            let _ = admin_stopped.await;
        },
    ));
    // `wharf import` / `wharf export` reach this process through its control socket.
    let (control_stop, control_stopped) = oneshot::channel::<()>();
    let control_task = match crate::transfer::control::bind(&config.data_dir) {
        Ok(l) => Some(tokio::spawn(crate::transfer::control::serve(
            l,
            registry.clone(),
            async {
                let _ = control_stopped.await;
            },
        ))),
        Err(e) => {
            tracing::warn!(
                error = %e,
                path = %crate::transfer::control::socket_path(&config.data_dir).display(),
                "no control socket: `wharf import`/`export` work only while Wharf is stopped"
            );
            None
        }
    };
    ready.store(true, std::sync::atomic::Ordering::SeqCst);
    // Last-access times are written in batches; expired authorization decisions are pruned
    // at start-up and hourly.
    let flusher = {
        let registry = registry.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(30));
            for n in 0u64.. {
                tick.tick().await;
                let r = registry.clone();
                let _ = tokio::task::spawn_blocking(move || {
                    if let Err(e) = r.store().flush_access() {
                        tracing::warn!(error = %e, "cannot write last-access times");
                    }
                    if n % 120 == 0 {
                        r.prune_authz();
                    }
                })
                .await;
            }
        })
    };
    let store_for_exit = registry.store().clone();
    let registry_for_exit = registry.clone();
    let limits = server::Limits::registry(&config.connections);
    let task = tokio::spawn(async move {
        server::serve(listener, handler, acceptor, limits, async {
            let _ = stopped.await;
        })
        .await;
        // Fills whose clients are gone (or already have every verified byte) finish their
        // commit before the store closes.
        registry_for_exit
            .drain_fills(std::time::Duration::from_secs(30))
            .await;
        let _ = admin_stop.send(());
        let _ = admin_task.await;
        let _ = control_stop.send(());
        if let Some(t) = control_task {
            let _ = t.await;
        }
        flusher.abort();
        let _ = tokio::task::spawn_blocking(move || store_for_exit.flush_access()).await;
    });
    tracing::info!(%addr, %admin_addr, data_dir = %config.data_dir.display(), upstreams = config.upstreams.len(), "wharf listening");
    Ok(Running {
        addr,
        admin_addr,
        registry,
        stop: Some(stop),
        task,
    })
}
