//! A question a tokio task asks Python's handlers and waits for.

use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

/// A question a tokio task asks Python's handlers and waits for: the origin
/// of a client, the credentials for a proxy. The answer starts as a default,
/// handlers change it, and it is sent once, when the handlers are done or
/// when Python drops the object that carried the question, so that a task
/// never waits on a question nobody saw. The asker bounds the wait.
pub struct Question<T> {
    /// What is asked about, for the handlers.
    pub subject: String,
    answer: Mutex<T>,
    reply: Mutex<Option<oneshot::Sender<T>>>,
}

impl<T: Clone> Question<T> {
    /// A question about `subject`, whose answer starts as `default`, and
    /// where the answer will come; `send` it to Python in an event.
    pub fn new(subject: String, default: T) -> (Arc<Question<T>>, oneshot::Receiver<T>) {
        let (reply, answer) = oneshot::channel();
        let question = Question {
            subject,
            answer: Mutex::new(default),
            reply: Mutex::new(Some(reply)),
        };
        (Arc::new(question), answer)
    }

    pub fn get(&self) -> T {
        self.answer
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn set(&self, answer: T) {
        *self.answer.lock().unwrap_or_else(|e| e.into_inner()) = answer;
    }

    /// Sends the answer to the asker; later calls change nothing.
    pub fn reply(&self) {
        let reply = self.reply.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(reply) = reply {
            let _ = reply.send(self.get());
        }
    }
}
