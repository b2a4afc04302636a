//! The firmware's 15-entry timestamp queue (queue.h), with its quirks: a push onto a full queue
//! overwrites the oldest entry, `front` of an empty queue is 0 and `back` is whatever the next
//! push will overwrite.

pub const QUEUE_SIZE: usize = 15;

#[derive(Debug, Clone, Default)]
pub struct TimestampQueue {
    buffer: [u32; QUEUE_SIZE],
    head: usize,
    tail: usize,
    full: bool,
}

impl TimestampQueue {
    pub fn is_full(&self) -> bool {
        self.full
    }

    pub fn is_empty(&self) -> bool {
        !self.full && self.head == self.tail
    }

    pub fn push(&mut self, timestamp: u32) {
        if self.full {
            self.tail = (self.tail + 1) % QUEUE_SIZE;
        }
        self.buffer[self.head] = timestamp;
        self.head = (self.head + 1) % QUEUE_SIZE;
        self.full = self.head == self.tail;
    }

    /// Removes the oldest entry; does nothing on an empty queue.
    pub fn pop(&mut self) {
        if self.is_empty() {
            return;
        }
        self.tail = (self.tail + 1) % QUEUE_SIZE;
        self.full = false;
    }

    /// The newest timestamp, or 0 when empty.
    pub fn front(&self) -> u32 {
        if self.is_empty() {
            return 0;
        }
        self.buffer[(self.head + QUEUE_SIZE - 1) % QUEUE_SIZE]
    }

    /// The oldest timestamp ("garbage if the buffer is empty", as the firmware says).
    pub fn back(&self) -> u32 {
        self.buffer[self.tail]
    }
}
