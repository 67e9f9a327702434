//! The composition root: opens the store, builds the upstreams and the registry, runs the
//! server, and shuts it down cleanly.

use crate::config::Config;
use crate::http::handlers::Handler;
use crate::http::server;
use crate::notify::Notifier;
use crate::registry::Registry;
use crate::store::Store;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A running Wharf: its addresses and the handle to stop it.
pub struct Running {
    pub addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub registry: Arc<Registry>,
    /// Where events go (`[[notify]]`): SIGHUP makes its file sinks reopen.
    pub notify: Arc<Notifier>,
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
    let (registry, notify) = open_registry(&config, addr).await?;
    let admin = TcpListener::bind(config.admin_listen).await.map_err(|e| {
        format!(
            "cannot listen on {} (admin_listen): {e}",
            config.admin_listen
        )
    })?;
    let admin_addr = admin
        .local_addr()
        .map_err(|e| format!("admin listener address: {e}"))?;
    let (acceptor, certs) = tls_acceptor(&config)?;
    on_hangup(certs, notify.clone());
    let running_notify = notify.clone();
    let handler = Arc::new(Handler {
        tls: acceptor.is_some(),
        registry: registry.clone(),
        sessions: Arc::new(crate::auth::Sessions::new(config.auth.token_ttl)),
        notify,
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
        notify: running_notify,
        stop: Some(stop),
        task,
    })
}

/// Opens the store (on a blocking thread: it reconciles records with files), starts the
/// notifier (events name `addr` as their source) and builds the registry over them; the
/// notifier is also the HTTP edge's (pull and denied events) and SIGHUP's (file sinks).
async fn open_registry(
    config: &Config,
    addr: SocketAddr,
) -> Result<(Arc<Registry>, Arc<Notifier>), String> {
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
    let notify = Arc::new(Notifier::start(&config.notify, addr, metrics.clone())?);
    let registry = Registry::new(config, Arc::new(store), metrics, notify.clone())?;
    Ok((Arc::new(registry), notify))
}

type Certs = Arc<crate::http::tls::Reloadable>;

/// The TLS acceptor of `[tls]`, if any, and its certificate (re-read on SIGHUP).
fn tls_acceptor(
    config: &Config,
) -> Result<(Option<tokio_rustls::TlsAcceptor>, Option<Certs>), String> {
    let Some(t) = &config.tls else {
        return Ok((None, None));
    };
    let certs = Arc::new(crate::http::tls::Reloadable::new(
        &t.cert_file,
        &t.key_file,
    )?);
    let acceptor = crate::http::tls::acceptor(certs.clone())?;
    Ok((Some(acceptor), Some(certs)))
}

/// On SIGHUP: the TLS certificate is re-read (open connections keep theirs) and the file
/// sinks of `[[notify]]` reopen their files (logrotate), with or without `[tls]`.
fn on_hangup(certs: Option<Certs>, notify: Arc<Notifier>) {
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(mut hup) => {
            tokio::spawn(async move {
                while hup.recv().await.is_some() {
                    notify.reopen();
                    let Some(certs) = &certs else { continue };
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
            flusher: maintenance(registry.clone(), config.cache.max_idle),
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

/// Last-access times are written in batches every 30 s, when upstream usage is measured
/// (and quotas held); expired authorization decisions are pruned at start-up and hourly;
/// with `cache.max_idle`, idle content is swept every quarter of it (at most every minute).
fn maintenance(registry: Arc<Registry>, max_idle: Option<Duration>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        tokio::join!(flush_loop(registry.clone()), idle_loop(registry, max_idle));
    })
}

async fn flush_loop(registry: Arc<Registry>) {
    let mut tick = tokio::time::interval(Duration::from_secs(30));
    for n in 0u64.. {
        tick.tick().await;
        let r = registry.clone();
        let _ = tokio::task::spawn_blocking(move || {
            if let Err(e) = r.store().flush_access() {
                tracing::warn!(error = %e, "cannot write last-access times");
            }
            r.check_quotas();
            if n % 120 == 0 {
                r.prune_authz();
            }
        })
        .await;
    }
}

async fn idle_loop(registry: Arc<Registry>, max_idle: Option<Duration>) {
    let Some(max_idle) = max_idle else { return };
    let every = (max_idle / 4).min(Duration::from_secs(60));
    loop {
        tokio::time::sleep(every).await;
        let r = registry.clone();
        let _ = tokio::task::spawn_blocking(move || r.sweep_idle()).await;
    }
}
