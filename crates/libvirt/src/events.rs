//! libvirt's domain lifecycle events, as a channel.
//!
//! The `virt` crate wraps libvirt's event loop (`virEventRegisterDefaultImpl`,
//! `virEventRunDefaultImpl`) but not the registration of domain event
//! callbacks, so this module calls `virConnectDomainEventRegisterAny` and
//! `virConnectRegisterCloseCallback` from `virt-sys` itself. It is the only
//! unsafe code of the crate (the crate denies it everywhere else).
//!
//! How it fits together:
//! - [`start_event_loop`] registers libvirt's default event loop once per
//!   process (libvirt requires this before the first connection is opened,
//!   or events and keepalives never arrive on it) and runs it forever on a
//!   dedicated thread, `libvirt-events`. Every callback below runs there.
//! - [`Subscription::open`] opens its own connection and registers two
//!   callbacks on it: one for every domain's lifecycle events, one for the
//!   connection closing (libvirtd stopped, or keepalive gave up). Each gets
//!   its own boxed [`mpsc::UnboundedSender`] as `opaque`, which libvirt hands
//!   back to [`free_sender`] exactly once, when the callback is
//!   deregistered or the connection freed: the sender outlives every call of
//!   the callback. Unbounded because lifecycle events are few (a handful per
//!   session action) and dropping one would lose a phase change.
//! - Dropping the subscription deregisters both and closes its connection.

use std::ffi::{CStr, c_int, c_void};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::OnceLock;
use std::time::Duration;
use tokio::sync::mpsc;
use virt::connect::Connect;
use virt::error::Error as VirtError;
use virt_sys as sys;

/// What the event loop reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DomainEvent {
    /// A lifecycle event (`VIR_DOMAIN_EVENT_*`) with its detail
    /// (`VIR_DOMAIN_EVENT_*_*`), for the domain called `domain`.
    Lifecycle {
        domain: String,
        event: i32,
        detail: i32,
    },
    /// The subscription's connection closed: nothing more will come.
    Closed,
}

type Sender = mpsc::UnboundedSender<DomainEvent>;

static EVENT_LOOP: OnceLock<Result<(), String>> = OnceLock::new();

/// Registers libvirt's default event loop and runs it on its own thread,
/// once per process; call before opening any connection.
pub fn start_event_loop() -> Result<(), String> {
    EVENT_LOOP
        .get_or_init(|| {
            // libvirt prints every error to stderr by default, including
            // the "no such domain" answers this platform expects.
            virt::error::clear_error_callback();
            virt::event::event_register_default_impl()
                .map_err(|e| format!("cannot start libvirt's event loop: {e}"))?;
            std::thread::Builder::new()
                .name("libvirt-events".into())
                .spawn(|| {
                    loop {
                        if let Err(e) = virt::event::event_run_default_impl() {
                            tracing::warn!(error = %e, "libvirt's event loop failed");
                            std::thread::sleep(Duration::from_secs(1));
                        }
                    }
                })
                .map_err(|e| format!("cannot start libvirt's event thread: {e}"))?;
            Ok(())
        })
        .clone()
}

/// Lifecycle events of every domain on one connection, until dropped.
pub struct Subscription {
    registration: Option<Registration>,
    events: mpsc::UnboundedReceiver<DomainEvent>,
}

struct Registration {
    connect: Connect,
    lifecycle_id: c_int,
}

impl Subscription {
    /// Opens a connection to `uri` and subscribes (blocking); after
    /// [`start_event_loop`].
    pub fn open(uri: &str) -> Result<Self, VirtError> {
        let mut connect = Connect::open(Some(uri))?;
        let (sender, events) = mpsc::unbounded_channel();
        match register(&connect, &sender) {
            Ok(lifecycle_id) => Ok(Subscription {
                registration: Some(Registration {
                    connect,
                    lifecycle_id,
                }),
                events,
            }),
            Err(e) => {
                let _ = connect.close();
                Err(e)
            }
        }
    }

    /// The next event; `None` once the connection closed.
    pub async fn next(&mut self) -> Option<DomainEvent> {
        match self.events.recv().await? {
            DomainEvent::Closed => None,
            event => Some(event),
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let Some(registration) = self.registration.take() else {
            return;
        };
        // Deregistering is an RPC: never on an async worker thread.
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => drop(runtime.spawn_blocking(move || registration.release())),
            Err(_) => registration.release(),
        }
    }
}

impl Registration {
    fn release(mut self) {
        let ptr = self.connect.as_ptr();
        // SAFETY: `ptr` is the open connection both callbacks were
        // registered on, and `lifecycle_id` the id libvirt returned for
        // the lifecycle one. Failures (a connection already closed by
        // libvirtd) leave nothing to undo; libvirt frees the senders when
        // it frees the connection.
        unsafe {
            sys::virConnectDomainEventDeregisterAny(ptr, self.lifecycle_id);
            sys::virConnectUnregisterCloseCallback(ptr, Some(on_close));
        }
        let _ = self.connect.close();
    }
}

/// Registers the close and lifecycle callbacks, each with its own sender.
fn register(connect: &Connect, sender: &Sender) -> Result<c_int, VirtError> {
    let ptr = connect.as_ptr();
    let close_sender = Box::into_raw(Box::new(sender.clone())).cast::<c_void>();
    // SAFETY: `ptr` is an open connection; `on_close` has the signature of
    // `virConnectCloseFunc`; `close_sender` is a leaked `Box<Sender>` that
    // libvirt passes to `free_sender` once, when it lets go of it.
    let rc = unsafe {
        sys::virConnectRegisterCloseCallback(ptr, Some(on_close), close_sender, Some(free_sender))
    };
    if rc < 0 {
        let err = VirtError::last_error();
        // SAFETY: libvirt did not take the box (registration failed).
        unsafe { free_sender(close_sender) };
        return Err(err);
    }
    let lifecycle_sender = Box::into_raw(Box::new(sender.clone())).cast::<c_void>();
    type Lifecycle = unsafe extern "C" fn(
        sys::virConnectPtr,
        sys::virDomainPtr,
        c_int,
        c_int,
        *mut c_void,
    ) -> c_int;
    type Generic = unsafe extern "C" fn(sys::virConnectPtr, sys::virDomainPtr, *mut c_void);
    // SAFETY: libvirt calls a VIR_DOMAIN_EVENT_ID_LIFECYCLE callback with
    // the lifecycle signature; the generic type of the registration API is
    // a placeholder every caller casts to (libvirt's own
    // VIR_DOMAIN_EVENT_CALLBACK macro does the same cast).
    let callback = unsafe { std::mem::transmute::<Lifecycle, Generic>(on_lifecycle) };
    // SAFETY: as above; a null domain subscribes to every domain.
    let id = unsafe {
        sys::virConnectDomainEventRegisterAny(
            ptr,
            std::ptr::null_mut(),
            sys::VIR_DOMAIN_EVENT_ID_LIFECYCLE as c_int,
            Some(callback),
            lifecycle_sender,
            Some(free_sender),
        )
    };
    if id < 0 {
        let err = VirtError::last_error();
        // SAFETY: libvirt did not take the box; the close callback did
        // take its own, which unregistering gives back to `free_sender`.
        unsafe {
            free_sender(lifecycle_sender);
            sys::virConnectUnregisterCloseCallback(ptr, Some(on_close));
        }
        return Err(err);
    }
    Ok(id)
}

/// Sends on the `Box<Sender>` behind `opaque`; never unwinds into C.
///
/// # Safety
/// `opaque` is a pointer made by `register` that libvirt has not yet freed.
unsafe fn send(opaque: *mut c_void, event: DomainEvent) {
    // SAFETY: per this function's contract the box is alive.
    let sender = unsafe { &*opaque.cast::<Sender>() };
    // The receiver may be gone (the stream was dropped): nothing to do.
    let _ = sender.send(event);
}

unsafe extern "C" fn on_lifecycle(
    _conn: sys::virConnectPtr,
    dom: sys::virDomainPtr,
    event: c_int,
    detail: c_int,
    opaque: *mut c_void,
) -> c_int {
    let _ = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: `dom` is valid for the duration of the callback and owns
        // the name it returns.
        let name = unsafe { sys::virDomainGetName(dom) };
        if name.is_null() {
            return;
        }
        // SAFETY: a NUL-terminated string owned by `dom`, copied at once.
        let domain = unsafe { CStr::from_ptr(name) }
            .to_string_lossy()
            .into_owned();
        // SAFETY: `opaque` is the sender registered with this callback.
        unsafe {
            send(
                opaque,
                DomainEvent::Lifecycle {
                    domain,
                    event,
                    detail,
                },
            )
        };
    }));
    0
}

unsafe extern "C" fn on_close(_conn: sys::virConnectPtr, reason: c_int, opaque: *mut c_void) {
    let _ = catch_unwind(AssertUnwindSafe(|| {
        tracing::warn!(reason, "the libvirt event connection closed");
        // SAFETY: `opaque` is the sender registered with this callback.
        unsafe { send(opaque, DomainEvent::Closed) };
    }));
}

/// Frees a sender `register` leaked; libvirt calls it once per box.
unsafe extern "C" fn free_sender(opaque: *mut c_void) {
    if !opaque.is_null() {
        // SAFETY: made by `Box::into_raw` in `register`, freed only here.
        drop(unsafe { Box::from_raw(opaque.cast::<Sender>()) });
    }
}
