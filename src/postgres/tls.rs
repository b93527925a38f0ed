//! Keeping the protocol watcher above TLS: the user's connector does the handshake, and the
//! session it returns is wrapped again so the watcher sees plaintext.

use std::future::Future;
use std::pin::Pin;

use tokio_postgres::tls::{ChannelBinding, TlsConnect, TlsStream};

use super::socket::Socket;
use super::wire::Watched;

/// A [`TlsConnect`] for the watched socket: unwraps it, lets `inner` do the handshake on the bare
/// socket, and watches the encrypted session's plaintext with the same wire.
pub(crate) struct WatchTls<T> {
    pub(crate) inner: T,
}

type Handshake<S, E> = Pin<Box<dyn Future<Output = Result<Watched<S>, E>> + Send>>;

impl<T> TlsConnect<Watched<Socket>> for WatchTls<T>
where
    T: TlsConnect<Socket>,
    T::Future: Send + 'static,
{
    type Stream = Watched<T::Stream>;
    type Error = T::Error;
    type Future = Handshake<T::Stream, T::Error>;

    fn connect(self, stream: Watched<Socket>) -> Self::Future {
        let (socket, wire) = stream.into_parts();
        let handshake = self.inner.connect(socket);
        Box::pin(async move { handshake.await.map(|session| Watched::new(session, wire)) })
    }
}

impl<S: TlsStream + Unpin> TlsStream for Watched<S> {
    fn channel_binding(&self) -> ChannelBinding {
        self.get_ref().channel_binding()
    }
}
