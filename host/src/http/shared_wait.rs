//! One wait for a `/_debug/subscribe` subscription, shared by every request for it.
//!
//! Two identical requests find one subscription; if each waited for the broker on its own,
//! the first to see a refusal would cancel the subscription, and the others would then read
//! "cancelled" (a 500) or, arriving a moment later, find nothing wrong. Here the first
//! request waits and every other one made meanwhile waits for that same answer, so a
//! refusal reaches them all with the same status and words.

use std::{
    collections::HashMap,
    future::Future,
    sync::{Arc, Mutex},
};

use tokio::sync::OnceCell;

use crate::sync::Unpoisoned;

/// The answers being waited for, by subscription id.
pub struct SharedWaits<E> {
    waits: Mutex<HashMap<u64, Wait<E>>>,
}

struct Wait<E> {
    answer: Arc<OnceCell<Result<(), E>>>,
    /// Whether the subscription was made by a request of this wait (then a refusal
    /// cancels it: on an error nothing stays subscribed).
    fresh: bool,
}

impl<E: Clone> SharedWaits<E> {
    pub fn new() -> Self {
        SharedWaits {
            waits: Mutex::new(HashMap::new()),
        }
    }

    /// Joins the wait for subscription `id` (`added`: this request made it), or starts it.
    /// Call it where the subscription was found or made, under the same lock, so that no
    /// request can find the subscription before its wait exists.
    pub fn join(&self, id: u64, added: bool) -> Joined<'_, E> {
        let mut waits = self.waits.locked();
        let wait = waits.entry(id).or_insert_with(|| Wait {
            answer: Arc::new(OnceCell::new()),
            fresh: added,
        });
        Joined {
            waits: self,
            id,
            answer: Arc::clone(&wait.answer),
            fresh: wait.fresh,
        }
    }
}

impl<E: Clone> Default for SharedWaits<E> {
    fn default() -> Self {
        Self::new()
    }
}

/// A request's place in a wait.
pub struct Joined<'a, E> {
    waits: &'a SharedWaits<E>,
    id: u64,
    answer: Arc<OnceCell<Result<(), E>>>,
    fresh: bool,
}

impl<E: Clone> Joined<'_, E> {
    /// The answer: `ready` is run by one request only (another takes over if that one is
    /// dropped); `cancel` runs once if it failed and the subscription was made for this wait.
    /// The next request after the answer starts a new wait.
    pub async fn answer<F>(self, ready: F, cancel: impl FnOnce()) -> Result<(), E>
    where
        F: Future<Output = Result<(), E>>,
    {
        let fresh = self.fresh;
        let answer = self
            .answer
            .get_or_init(|| async move {
                let answer = ready.await;
                if answer.is_err() && fresh {
                    cancel();
                }
                answer
            })
            .await
            .clone();
        let mut waits = self.waits.waits.locked();
        if waits
            .get(&self.id)
            .is_some_and(|wait| Arc::ptr_eq(&wait.answer, &self.answer))
        {
            waits.remove(&self.id);
        }
        answer
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn every_caller_gets_the_one_answer_and_the_refused_is_cancelled_once() {
        let waits: SharedWaits<String> = SharedWaits::new();
        let asked = AtomicUsize::new(0);
        let cancelled = AtomicUsize::new(0);
        let (gate, opened) = tokio::sync::oneshot::channel::<()>();
        let opened = futures::FutureExt::shared(opened);
        let joined: Vec<_> = (0..3).map(|n| waits.join(7, n == 0)).collect();
        let answers = futures::future::join_all(joined.into_iter().map(|joined| {
            let opened = opened.clone();
            let (asked, cancelled) = (&asked, &cancelled);
            joined.answer(
                async move {
                    asked.fetch_add(1, Ordering::SeqCst);
                    let _ = opened.await;
                    Err("refused".to_owned())
                },
                move || {
                    cancelled.fetch_add(1, Ordering::SeqCst);
                },
            )
        }));
        let _ = gate.send(());
        let answers = answers.await;
        assert_eq!(answers, vec![Err("refused".to_owned()); 3]);
        assert_eq!(asked.load(Ordering::SeqCst), 1);
        assert_eq!(cancelled.load(Ordering::SeqCst), 1);
        assert!(waits.waits.locked().is_empty());
    }

    #[tokio::test]
    async fn a_subscription_made_earlier_is_not_cancelled_by_a_failed_wait() {
        let waits: SharedWaits<String> = SharedWaits::new();
        let cancelled = AtomicUsize::new(0);
        let answer = waits
            .join(1, false)
            .answer(async { Err("down".to_owned()) }, || {
                cancelled.fetch_add(1, Ordering::SeqCst);
            })
            .await;
        assert!(answer.is_err());
        assert_eq!(cancelled.load(Ordering::SeqCst), 0);
    }
}
