//! What a command does to the connection it runs on, read from its name and arguments: whether
//! it leaves session state behind, whether it breaks the one-reply-per-command rhythm the
//! multiplexed connection depends on, and how long the server may hold its reply on purpose.
//!
//! Pure functions, no I/O: [`classify`] runs before every command the pool's wrapper sends, so
//! it only compares a few bytes. It looks at the command name, and for `CLIENT` at its
//! subcommand; anything it does not know is [`Effect::Clean`] (data commands, by far the most
//! common), so a clean checkout costs nothing.

use std::time::Duration;

use redis::{Arg, Cmd};

/// What running a command does to its connection's session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Effect {
    /// Leaves the session as it found it (`GET`, `SET`, `EVAL`, `PING`, ...).
    Clean,
    /// Changes per-connection state that only `RESET` (then `AUTH` and `SELECT` of the
    /// configured database) restores: the selected database, client-side caching
    /// (`CLIENT TRACKING`), the authenticated user, the protocol (`HELLO`), the client name,
    /// `READONLY`.
    Dirty,
    /// Opens a transaction (`MULTI`): dirty until an `EXEC` or `DISCARD` ends it.
    Begin,
    /// Watches keys (`WATCH`): dirty until an `EXEC` or `DISCARD` (of a transaction opened
    /// after it) or an `UNWATCH`.
    Watch,
    /// Ends an open transaction and every watch with it (`EXEC`, `DISCARD`; without an open
    /// transaction, the server refuses them and the watches stay).
    End,
    /// Forgets every watched key (`UNWATCH`).
    Unwatch,
    /// Makes the server send more or fewer replies than commands: subscriptions (each channel
    /// and each message is a reply in RESP2), `MONITOR`, `CLIENT REPLY OFF|SKIP`, or ends the
    /// connection (`QUIT`) or turns it into a replica link. The multiplexed connection pairs
    /// each reply with the oldest command waiting, so after one of these it can no longer tell
    /// whose reply is whose: the connection is closed, never reset.
    Desync,
}

impl Effect {
    /// Whether the command changes the session for whoever shares the connection: refused
    /// through shared access. (`EXEC`, `DISCARD` and `UNWATCH` only end what a `MULTI` or
    /// `WATCH` began, which shared access cannot send.)
    pub(crate) fn changes_session(self) -> bool {
        matches!(self, Self::Dirty | Self::Begin | Self::Watch | Self::Desync)
    }
}

/// How long the server may hold a command's reply on purpose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Block {
    /// Not a blocking command: the reply comes as soon as the server runs it.
    No,
    /// Blocks up to this long (`BLPOP key 2`, `XREAD BLOCK 2000`).
    For(Duration),
    /// Blocks until there is something to return (`BLPOP key 0`, `XREAD BLOCK 0`).
    Forever,
}

impl Block {
    /// How long two commands run one after the other may block together, for a pipeline.
    pub(crate) fn then(self, next: Self) -> Self {
        match (self, next) {
            (Self::Forever, _) | (_, Self::Forever) => Self::Forever,
            (Self::No, other) | (other, Self::No) => other,
            (Self::For(a), Self::For(b)) => Self::For(a.saturating_add(b)),
        }
    }

    /// How long to wait for the reply of a command that blocks like this, given the response
    /// timeout for a command that does not: the block plus the response timeout, or no limit.
    pub(crate) fn reply_timeout(self, response_timeout: Option<Duration>) -> Option<Duration> {
        match self {
            Self::No => response_timeout,
            Self::For(block) => response_timeout.map(|timeout| timeout.saturating_add(block)),
            Self::Forever => None,
        }
    }
}

/// The name (or another simple argument) of a command, at `index`.
fn arg(cmd: &Cmd, index: usize) -> Option<&[u8]> {
    match cmd.args_iter().nth(index)? {
        Arg::Simple(bytes) => Some(bytes),
        _ => None,
    }
}

fn is(bytes: Option<&[u8]>, name: &str) -> bool {
    bytes.is_some_and(|bytes| bytes.eq_ignore_ascii_case(name.as_bytes()))
}

/// What `cmd` does to the session it runs in.
pub(crate) fn classify(cmd: &Cmd) -> Effect {
    let Some(name) = arg(cmd, 0) else { return Effect::Clean };
    // Every name below is 4 to 12 bytes long: longer or shorter ones are data commands.
    if name.len() < 4 || name.len() > 12 {
        return Effect::Clean;
    }
    let name = name.to_ascii_uppercase();
    match name.as_slice() {
        b"SELECT" | b"AUTH" | b"HELLO" | b"RESET" | b"READONLY" | b"READWRITE" | b"ASKING" => {
            Effect::Dirty
        }
        b"MULTI" => Effect::Begin,
        b"WATCH" => Effect::Watch,
        b"EXEC" | b"DISCARD" => Effect::End,
        b"UNWATCH" => Effect::Unwatch,
        b"SUBSCRIBE" | b"PSUBSCRIBE" | b"SSUBSCRIBE" | b"UNSUBSCRIBE" | b"PUNSUBSCRIBE"
        | b"SUNSUBSCRIBE" | b"MONITOR" | b"QUIT" | b"SYNC" | b"PSYNC" | b"REPLCONF" => {
            Effect::Desync
        }
        b"CLIENT" => classify_client(cmd),
        _ => Effect::Clean,
    }
}

/// `CLIENT` subcommands: most only read (`ID`, `INFO`, `LIST`, `GETNAME`) or act on other
/// connections (`KILL`, `PAUSE`, `UNBLOCK`); these change this one.
fn classify_client(cmd: &Cmd) -> Effect {
    let sub = arg(cmd, 1).map(<[u8]>::to_ascii_uppercase).unwrap_or_default();
    match sub.as_slice() {
        b"REPLY" if is(arg(cmd, 2), "ON") => Effect::Clean,
        b"REPLY" => Effect::Desync,
        b"TRACKING" | b"CACHING" | b"SETNAME" | b"NO-EVICT" | b"NO-TOUCH" | b"SETINFO" => {
            Effect::Dirty
        }
        _ => Effect::Clean,
    }
}

/// A timeout argument in seconds, as `BLPOP` takes it (a decimal; 0 blocks forever).
fn seconds(bytes: Option<&[u8]>) -> Block {
    let parsed = bytes
        .and_then(|bytes| std::str::from_utf8(bytes).ok())
        .and_then(|text| text.trim().parse::<f64>().ok());
    match parsed {
        Some(0.0) => Block::Forever,
        Some(secs) => Duration::try_from_secs_f64(secs).map_or(Block::No, Block::For),
        // The server refuses a malformed timeout at once.
        None => Block::No,
    }
}

/// A timeout argument in milliseconds, as `XREAD BLOCK` and `WAIT` take it (0 blocks forever).
fn millis(bytes: Option<&[u8]>) -> Block {
    let parsed = bytes
        .and_then(|bytes| std::str::from_utf8(bytes).ok())
        .and_then(|text| text.trim().parse::<u64>().ok());
    match parsed {
        Some(0) => Block::Forever,
        Some(ms) => Block::For(Duration::from_millis(ms)),
        None => Block::No,
    }
}

/// How long the server may hold `cmd`'s reply on purpose.
pub(crate) fn block(cmd: &Cmd) -> Block {
    let Some(name) = arg(cmd, 0) else { return Block::No };
    if !(4..=10).contains(&name.len())
        || !matches!(name[0], b'B' | b'b' | b'X' | b'x' | b'W' | b'w')
    {
        return Block::No;
    }
    let count = cmd.args_iter().len();
    let last = count.checked_sub(1).and_then(|index| arg(cmd, index));
    let name = name.to_ascii_uppercase();
    match name.as_slice() {
        b"BLPOP" | b"BRPOP" | b"BRPOPLPUSH" | b"BLMOVE" | b"BZPOPMIN" | b"BZPOPMAX" => {
            seconds(last)
        }
        b"BLMPOP" | b"BZMPOP" => seconds(arg(cmd, 1)),
        b"WAIT" | b"WAITAOF" => millis(last),
        b"XREAD" | b"XREADGROUP" => {
            // `BLOCK ms` comes among the options, before `STREAMS` and the keys (a key could be
            // called "BLOCK").
            let mut args = cmd.args_iter().skip(1);
            while let Some(Arg::Simple(option)) = args.next() {
                if option.eq_ignore_ascii_case(b"STREAMS") {
                    break;
                }
                if option.eq_ignore_ascii_case(b"BLOCK") {
                    return match args.next() {
                        Some(Arg::Simple(ms)) => millis(Some(ms)),
                        _ => Block::No,
                    };
                }
            }
            Block::No
        }
        _ => Block::No,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn command(args: &[&str]) -> Cmd {
        let mut cmd = redis::cmd(args[0]);
        for arg in &args[1..] {
            cmd.arg(*arg);
        }
        cmd
    }

    #[test]
    fn data_commands_are_clean() {
        for args in [
            &["GET", "k"][..],
            &["SET", "k", "v"],
            &["EVAL", "return 1", "0"],
            &["CLIENT", "ID"],
            &["CLIENT", "INFO"],
            &["CLIENT", "REPLY", "ON"],
            &["client", "kill", "ID", "5"],
            &["PING"],
            &["SCRIPT", "LOAD", "return 1"],
        ] {
            assert_eq!(classify(&command(args)), Effect::Clean, "{args:?}");
        }
    }

    #[test]
    fn session_commands_are_dirty_whatever_their_case() {
        for args in [
            &["SELECT", "1"][..],
            &["select", "1"],
            &["AUTH", "pw"],
            &["HELLO", "3"],
            &["RESET"],
            &["READONLY"],
            &["CLIENT", "TRACKING", "ON"],
            &["client", "setname", "x"],
            &["CLIENT", "NO-EVICT", "on"],
        ] {
            assert_eq!(classify(&command(args)), Effect::Dirty, "{args:?}");
        }
    }

    #[test]
    fn commands_that_change_the_reply_rhythm_desync() {
        for args in [
            &["SUBSCRIBE", "c"][..],
            &["psubscribe", "c*"],
            &["SSUBSCRIBE", "c"],
            &["UNSUBSCRIBE"],
            &["MONITOR"],
            &["CLIENT", "REPLY", "OFF"],
            &["CLIENT", "REPLY", "SKIP"],
            &["QUIT"],
        ] {
            assert_eq!(classify(&command(args)), Effect::Desync, "{args:?}");
        }
    }

    #[test]
    fn transactions_and_watches_are_tracked_apart() {
        assert_eq!(classify(&command(&["Multi"])), Effect::Begin);
        assert_eq!(classify(&command(&["WATCH", "k"])), Effect::Watch);
        assert_eq!(classify(&command(&["exec"])), Effect::End);
        assert_eq!(classify(&command(&["DISCARD"])), Effect::End);
        assert_eq!(classify(&command(&["UNWATCH"])), Effect::Unwatch);
        for effect in [Effect::Dirty, Effect::Begin, Effect::Watch, Effect::Desync] {
            assert!(effect.changes_session(), "{effect:?}");
        }
        for effect in [Effect::Clean, Effect::End, Effect::Unwatch] {
            assert!(!effect.changes_session(), "{effect:?}");
        }
    }

    #[test]
    fn blocking_commands_say_how_long_they_may_block() {
        let secs = |s: f64| Block::For(Duration::from_secs_f64(s));
        assert_eq!(block(&command(&["BLPOP", "a", "b", "2"])), secs(2.0));
        assert_eq!(block(&command(&["brpop", "a", "0.5"])), secs(0.5));
        assert_eq!(block(&command(&["BLPOP", "a", "0"])), Block::Forever);
        assert_eq!(block(&command(&["BLMOVE", "a", "b", "LEFT", "RIGHT", "3"])), secs(3.0));
        assert_eq!(block(&command(&["BZPOPMIN", "z", "1.5"])), secs(1.5));
        assert_eq!(block(&command(&["BLMPOP", "4", "1", "a", "LEFT"])), secs(4.0));
        assert_eq!(
            block(&command(&["XREAD", "COUNT", "1", "BLOCK", "2000", "STREAMS", "s", "$"])),
            secs(2.0)
        );
        assert_eq!(block(&command(&["XREAD", "BLOCK", "0", "STREAMS", "s", "$"])), Block::Forever);
        assert_eq!(
            block(&command(&["XREADGROUP", "GROUP", "g", "c", "STREAMS", "BLOCK", "0"])),
            Block::No,
            "a key called BLOCK is no option"
        );
        assert_eq!(block(&command(&["WAIT", "1", "100"])), secs(0.1));
        assert_eq!(block(&command(&["GET", "k"])), Block::No);
        assert_eq!(block(&command(&["BLPOP", "a", "soon"])), Block::No);
        assert_eq!(block(&command(&["BLPOP", "a", "-1"])), Block::No);
    }

    #[test]
    fn the_reply_timeout_adds_the_block_to_the_response_timeout() {
        let half = Some(Duration::from_millis(500));
        assert_eq!(Block::No.reply_timeout(half), half);
        assert_eq!(
            Block::For(Duration::from_secs(2)).reply_timeout(half),
            Some(Duration::from_millis(2500))
        );
        assert_eq!(Block::For(Duration::from_secs(2)).reply_timeout(None), None);
        assert_eq!(Block::Forever.reply_timeout(half), None);
        assert_eq!(
            Block::For(Duration::from_secs(1)).then(Block::For(Duration::from_secs(2))),
            Block::For(Duration::from_secs(3))
        );
        assert_eq!(Block::No.then(Block::Forever), Block::Forever);
    }
}
