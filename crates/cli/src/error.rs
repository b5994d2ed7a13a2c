//! Why a command failed, and the exit code that says so (cli.md §4).

use std::fmt;

/// The exit codes of cli.md §4.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// 1: the server or the network failed, or an API error not listed below.
    Failure = 1,
    /// 2: bad usage or an ambiguous name.
    Usage = 2,
    /// 3: denied by policy or by an approver.
    Denied = 3,
    /// 4: timed out or cancelled while waiting.
    TimedOut = 4,
    /// 5: not signed in, or the session expired.
    SignIn = 5,
    /// 6: forbidden (403).
    Forbidden = 6,
}

/// A failed command: what to print on stderr, and how to exit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The exit code.
    pub exit: Exit,
    /// The API's error code, when the server answered with one.
    pub code: Option<String>,
    /// What went wrong, for a person.
    pub message: String,
    /// The server's request id, when it answered.
    pub request_id: Option<String>,
}

impl Failure {
    /// A failure of kind `exit` with `message`.
    pub fn new(exit: Exit, message: impl Into<String>) -> Self {
        Self {
            exit,
            code: None,
            message: message.into(),
            request_id: None,
        }
    }

    /// Bad usage (exit 2).
    pub fn usage(message: impl Into<String>) -> Self {
        Self::new(Exit::Usage, message)
    }

    /// Not signed in (exit 5).
    pub fn sign_in(message: impl Into<String>) -> Self {
        Self::new(Exit::SignIn, message)
    }

    /// A server, network or local I/O failure (exit 1).
    pub fn server(message: impl Into<String>) -> Self {
        Self::new(Exit::Failure, message)
    }

    /// The lines printed on stderr: the error (with the API's code), then the request id.
    pub fn lines(&self) -> Vec<String> {
        let mut lines = vec![match &self.code {
            Some(code) => format!("error: {code}: {}", self.message),
            None => format!("error: {}", self.message),
        }];
        if let Some(id) = &self.request_id {
            lines.push(format!("request-id: {id}"));
        }
        lines
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.lines().join("\n"))
    }
}

impl std::error::Error for Failure {}

/// The result of a client step.
pub type Outcome<T> = Result<T, Failure>;
