//! Waiting for something that may not be set, as one branch of a `select!`: a deadline that
//! is `None` or an interval that is `None` never comes.

use tokio::time::{Instant, Interval};

/// Sleeps until `deadline`; never returns when there is none.
pub async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// The next tick of `interval`; never returns when there is none.
pub async fn tick(interval: &mut Option<Interval>) -> Instant {
    match interval {
        Some(interval) => interval.tick().await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_deadline_comes_and_none_never_does() {
        let start = Instant::now();
        sleep_until(Some(start + Duration::from_secs(3))).await;
        assert_eq!(start.elapsed(), Duration::from_secs(3));
        let never = tokio::time::timeout(Duration::from_secs(3600), sleep_until(None)).await;
        assert!(never.is_err(), "no deadline: still waiting after an hour");
    }

    #[tokio::test(start_paused = true)]
    async fn an_interval_ticks_and_none_never_does() {
        let start = Instant::now();
        let mut every = Some(tokio::time::interval(Duration::from_secs(2)));
        tick(&mut every).await; // at once
        tick(&mut every).await;
        assert_eq!(start.elapsed(), Duration::from_secs(2));
        let never = tokio::time::timeout(Duration::from_secs(3600), tick(&mut None)).await;
        assert!(never.is_err(), "no interval: still waiting after an hour");
    }
}
