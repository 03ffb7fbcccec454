//! Reloads are asked for here and carried out by the assembly ([`crate::state::Process`]):
//! the admin API (and anything else) holds a [`Reloads`] handle and awaits the answer,
//! while the assembly's background task takes each request from the [`ReloadQueue`] and
//! reloads — one at a time, with SIGHUP and the file watch. Nothing that asks for a reload
//! depends on what a reload builds.

use tokio::sync::{mpsc, oneshot};

/// What a reload changed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct ReloadReport {
    /// Routes in the new configuration.
    pub(crate) routes: usize,
    /// Providers whose definition changed (their cached identities are dropped).
    pub(crate) providers_changed: Vec<String>,
    /// Keys that changed but take effect only on restart.
    pub(crate) needs_restart: Vec<&'static str>,
}

/// Why a reload was refused (the old configuration keeps serving). Never holds a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub(crate) struct ReloadRejected(pub String);

type Answer = oneshot::Sender<Result<ReloadReport, ReloadRejected>>;

/// Asks for reloads (cheap to clone).
#[derive(Clone)]
pub(crate) struct Reloads(mpsc::Sender<Answer>);

/// The requests, for the one task that carries them out.
pub(crate) struct ReloadQueue(mpsc::Receiver<Answer>);

/// A connected pair.
pub(crate) fn channel() -> (Reloads, ReloadQueue) {
    let (tx, rx) = mpsc::channel(16);
    (Reloads(tx), ReloadQueue(rx))
}

impl Reloads {
    /// Reloads the configuration file and waits for the outcome.
    pub(crate) async fn request(&self) -> Result<ReloadReport, ReloadRejected> {
        let stopped = || ReloadRejected("the gateway is shutting down".into());
        let (answer, outcome) = oneshot::channel();
        self.0.send(answer).await.map_err(|_| stopped())?;
        outcome.await.map_err(|_| stopped())?
    }
}

impl ReloadQueue {
    /// The next request: reload, then answer it with [`ReloadQueue::answer`].
    pub(crate) async fn next(&mut self) -> Option<Answer> {
        self.0.recv().await
    }

    /// Answers one request (the asker may have gone: nothing to do then).
    pub(crate) fn answer(to: Answer, outcome: Result<ReloadReport, ReloadRejected>) {
        let _ = to.send(outcome);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_request_gets_the_answer_of_the_task_that_serves_the_queue() {
        let (reloads, mut queue) = channel();
        let server = tokio::spawn(async move {
            while let Some(to) = queue.next().await {
                ReloadQueue::answer(
                    to,
                    Ok(ReloadReport {
                        routes: 3,
                        ..ReloadReport::default()
                    }),
                );
            }
        });
        assert_eq!(reloads.request().await.unwrap().routes, 3);
        server.abort();
        let _ = server.await;
        assert!(
            reloads.request().await.is_err(),
            "no task: refused, not hung"
        );
    }
}
