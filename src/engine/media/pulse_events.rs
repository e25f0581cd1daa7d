//! The sound server's change notifications: a subscription to PulseAudio's (and pipewire-pulse's)
//! sink, source, card and server events (a default device changed is a server event), on a
//! connection of its own. The device watcher (`engine::device_watch`) waits on these instead of
//! listing the devices again and again: while nothing changes, nothing runs.
//!
//! The events arrive on the connection's own thread; [`subscribe`] hands them on as [`Notice`]s
//! and says once, with [`Notice::Ended`], that the connection is gone (the server died or
//! restarted): from then on nothing would come.

/// What the sound server says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notice {
    /// A sink, source, card or default device came, went or changed.
    Changed,
    /// The connection ended: no more notices.
    Ended,
}

/// A running subscription; dropping it closes its connection (a last [`Notice::Ended`] follows).
pub struct Subscription {
    #[cfg(target_os = "linux")]
    _client: pulseaudio::Client,
}

/// How long connecting may block the caller (a server that accepts and never answers).
#[cfg(target_os = "linux")]
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// Subscribes on a new connection to the server the environment names (as cpal's PulseAudio host
/// finds it). `notify` runs on the connection's thread: it must only hand the notice on (a
/// channel send), never block. Fails when no server answers (a try that fails once connected
/// sends its [`Notice::Ended`] too).
#[cfg(target_os = "linux")]
pub fn subscribe(notify: impl Fn(Notice) + Send + 'static) -> Result<Subscription, String> {
    use pulseaudio::protocol::SubscriptionMask;

    /// Owned by the connection: dropped (with a last notice) when the connection ends.
    struct Notifier<F: Fn(Notice)>(F);
    impl<F: Fn(Notice)> Drop for Notifier<F> {
        fn drop(&mut self) {
            (self.0)(Notice::Ended);
        }
    }

    let client = connect().map_err(|e| e.to_string())?;
    let notifier = Notifier(notify);
    let mask = SubscriptionMask::SINK
        | SubscriptionMask::SOURCE
        | SubscriptionMask::SERVER
        | SubscriptionMask::CARD;
    let on_event = move |_| {
        let notifier = &notifier;
        (notifier.0)(Notice::Changed)
    };
    futures_lite::future::block_on(client.subscribe(mask, on_event)).map_err(|e| e.to_string())?;
    Ok(Subscription { _client: client })
}

/// Change notifications need PulseAudio (Linux); elsewhere the watcher keeps looking.
#[cfg(not(target_os = "linux"))]
pub fn subscribe(_notify: impl Fn(Notice) + Send + 'static) -> Result<Subscription, String> {
    Err("no sound server notifications on this platform".into())
}

/// `pulseaudio::Client::from_env` with a bound on the handshake.
#[cfg(target_os = "linux")]
fn connect() -> Result<pulseaudio::Client, pulseaudio::ClientError> {
    let path =
        pulseaudio::socket_path_from_env().ok_or(pulseaudio::ClientError::ServerUnavailable)?;
    let socket = std::os::unix::net::UnixStream::connect(path)?;
    socket.set_read_timeout(Some(CONNECT_TIMEOUT))?;
    socket.set_write_timeout(Some(CONNECT_TIMEOUT))?;
    let cookie = pulseaudio::cookie_path_from_env().and_then(|p| std::fs::read(p).ok());
    pulseaudio::Client::new_unix(c"dialtone-devices", socket, cookie)
}
