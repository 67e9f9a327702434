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

/// As [`start`], on a listener the caller bound (tests bind port 0). Start-up runs in named
/// steps: open the store and build the registry, bind the admin listener, set up TLS (and its
/// SIGHUP reload), start the admin, control and maintenance tasks, then serve; the serving
/// task ends with the shutdown sequence ([`Tasks::shut_down`]).
pub async fn start_on(config: Config, listener: TcpListener) -> Result<Running, String> {
    let addr = listener
        .local_addr()
        .map_err(|e| format!("listener address: {e}"))?;
    let registry = open_registry(&config).await?;
    let admin = TcpListener::bind(config.admin_listen).await.map_err(|e| {
        format!(
            "cannot listen on {} (admin_listen): {e}",
            config.admin_listen
        )
    })?;
    let admin_addr = admin
        .local_addr()
        .map_err(|e| format!("admin listener address: {e}"))?;
    let acceptor = tls_acceptor(&config)?;
    let handler = Arc::new(Handler {
        tls: acceptor.is_some(),
        registry: registry.clone(),
        sessions: Arc::new(crate::auth::Sessions::new(config.auth.token_ttl)),
    });
    let tasks = Tasks::start(&config, admin, &registry);
    let (stop, stopped) = oneshot::channel::<()>();
    let limits = server::Limits::registry(&config.connections);
    let task = tokio::spawn(async move {
        server::serve(listener, handler, acceptor, limits, async {
            let _ = stopped.await;
        })
        .await;
        tasks.shut_down().await;
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

/// Opens the store (on a blocking thread: it reconciles records with files) and builds the
/// registry over it.
async fn open_registry(config: &Config) -> Result<Arc<Registry>, String> {
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
    Ok(Arc::new(Registry::new(config, Arc::new(store), metrics)?))
}

/// The TLS acceptor of `[tls]`, if any; SIGHUP re-reads the certificate (open connections
/// keep theirs).
fn tls_acceptor(config: &Config) -> Result<Option<tokio_rustls::TlsAcceptor>, String> {
    let Some(t) = &config.tls else {
        return Ok(None);
    };
    let certs = Arc::new(crate::http::tls::Reloadable::new(
        &t.cert_file,
        &t.key_file,
    )?);
    let acceptor = crate::http::tls::acceptor(certs.clone())?;
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(mut hup) => {
            tokio::spawn(async move {
                while hup.recv().await.is_some() {
                    match certs.reload() {
                        Ok(()) => tracing::info!("TLS certificate reloaded"),
                        Err(e) => {
                            tracing::error!(
                                "TLS certificate not reloaded, keeping the old one: {e}"
                            )
                        }
                    }
                }
            });
        }
        Err(e) => tracing::warn!("cannot watch SIGHUP: {e}"),
    }
    Ok(Some(acceptor))
}

/// What runs beside the registry listener, and how it stops.
struct Tasks {
    registry: Arc<Registry>,
    admin: (oneshot::Sender<()>, tokio::task::JoinHandle<()>),
    control: (oneshot::Sender<()>, Option<tokio::task::JoinHandle<()>>),
    flusher: tokio::task::JoinHandle<()>,
}

impl Tasks {
    /// Starts the admin listener, the control socket (`wharf import` / `export` reach this
    /// process through it) and the maintenance loop; the registry is then ready.
    fn start(config: &Config, admin: TcpListener, registry: &Arc<Registry>) -> Tasks {
        let ready: crate::http::admin::Ready = Default::default();
        let (admin_stop, admin_stopped) = oneshot::channel::<()>();
        let admin_task = tokio::spawn(crate::http::admin::serve(
            admin,
            registry.clone(),
            ready.clone(),
            crate::http::admin_api::Api {
                token: config.admin.token.clone(),
                pins: config.cache.pin.clone(),
            },
            server::Limits::admin(&config.connections),
            async {
                let _ = admin_stopped.await;
            },
        ));
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
        Tasks {
            registry: registry.clone(),
            admin: (admin_stop, admin_task),
            control: (control_stop, control_task),
            flusher: maintenance(registry.clone()),
        }
    }

    /// The shutdown sequence, once the registry listener has drained: fills finish their
    /// commit (at most 30 s), the admin listener and the control socket stop, last-access
    /// times are written.
    async fn shut_down(self) {
        self.registry
            .drain_fills(std::time::Duration::from_secs(30))
            .await;
        let _ = self.admin.0.send(());
        let _ = self.admin.1.await;
        let _ = self.control.0.send(());
        if let Some(t) = self.control.1 {
            let _ = t.await;
        }
        self.flusher.abort();
        let store = self.registry.store().clone();
        let _ = tokio::task::spawn_blocking(move || store.flush_access()).await;
    }
}

/// Last-access times are written in batches every 30 s; expired authorization decisions are
/// pruned at start-up and hourly.
fn maintenance(registry: Arc<Registry>) -> tokio::task::JoinHandle<()> {
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
}
