//! Capturing Wharf's `tracing` output in-process, at debug level (as `WHARF_LOG=debug`).
//!
//! A thread-local default subscriber (`tracing::subscriber::set_default`) is not reliable while
//! other tests run: with one scoped dispatcher, tracing-core computes a callsite's interest from
//! the default of whichever thread hits it first, so another test's thread can disable the
//! callsite for everyone. Instead [`capture`] installs, once per process, a *global* subscriber
//! (text and JSON formatters) whose filter passes events only on threads that are capturing,
//! and writes them to that thread's buffer. Use it from a `current_thread` runtime: every task
//! of the in-process Wharf then runs on the test's thread (`spawn_blocking` work does not).

use std::cell::RefCell;
use std::io::Write;
use std::sync::{Arc, Mutex, Once};
use tracing::level_filters::LevelFilter;
use tracing::subscriber::Interest;
use tracing::Metadata;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::{Context, Filter, Layer as _, SubscriberExt as _};

#[derive(Clone, Default)]
pub struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("lock")).into_owned()
    }
}

thread_local! {
    static SINK: RefCell<Option<Captured>> = const { RefCell::new(None) };
}

/// Stops this thread's capture when dropped.
pub struct Guard(());

impl Drop for Guard {
    fn drop(&mut self) {
        SINK.with(|s| s.borrow_mut().take());
    }
}

/// Captures this thread's events at debug level and above until the guard drops.
pub fn capture() -> (Captured, Guard) {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let subscriber = tracing_subscriber::registry()
            .with(
                tracing_subscriber::fmt::layer()
                    .with_ansi(false)
                    .with_writer(ThreadWriter)
                    .with_filter(Capturing),
            )
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_current_span(true)
                    .with_span_list(true)
                    .with_writer(ThreadWriter)
                    .with_filter(Capturing),
            );
        tracing::subscriber::set_global_default(subscriber)
            .expect("no other global tracing subscriber in the test binary");
    });
    let out = Captured::default();
    SINK.with(|s| *s.borrow_mut() = Some(out.clone()));
    (out, Guard(()))
}

/// Debug and above, on capturing threads only (decided per event, never cached).
struct Capturing;

impl<S> Filter<S> for Capturing {
    fn enabled(&self, meta: &Metadata<'_>, _: &Context<'_, S>) -> bool {
        *meta.level() <= LevelFilter::DEBUG && SINK.with(|s| s.borrow().is_some())
    }

    fn callsite_enabled(&self, meta: &'static Metadata<'static>) -> Interest {
        if *meta.level() <= LevelFilter::DEBUG {
            Interest::sometimes()
        } else {
            Interest::never()
        }
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        Some(LevelFilter::DEBUG)
    }
}

/// Writes to the current thread's capture buffer (or nowhere).
struct ThreadWriter;

impl Write for ThreadWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        SINK.with(|s| {
            if let Some(c) = s.borrow().as_ref() {
                c.0.lock().expect("lock").extend_from_slice(buf);
            }
        });
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for ThreadWriter {
    type Writer = ThreadWriter;

    fn make_writer(&'a self) -> ThreadWriter {
        ThreadWriter
    }
}
