//! A parallel map over scoped threads: virtual-time runs are independent and CPU-bound, so the
//! planner spreads them over the cores. Results come back in input order, so parallelism never
//! changes a plan. Hand-written because it is a dozen lines and the crate has no thread pool.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

/// `f` over `items` on up to `available_parallelism` threads, results in the order of `items`.
pub fn map<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let order: Vec<usize> = (0..items.len()).collect();
    map_in(items, &order, f)
}

/// [`map`], taking the items in order of `cost`, highest first: threads take the next item as they
/// finish one, so a costly item started last would leave the other cores idle while it runs.
pub fn map_costliest_first<T: Sync, R: Send>(
    items: &[T],
    cost: impl Fn(&T) -> f64,
    f: impl Fn(&T) -> R + Sync,
) -> Vec<R> {
    let costs: Vec<f64> = items.iter().map(cost).collect();
    map_in(items, &costliest_first(&costs), f)
}

/// Indices of `costs`, highest first; equal costs keep their order.
fn costliest_first(costs: &[f64]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..costs.len()).collect();
    order.sort_by(|&a, &b| costs[b].total_cmp(&costs[a]));
    order
}

/// `f` over `items`, started in `order` (a permutation of their indices), results in item order.
fn map_in<T: Sync, R: Send>(items: &[T], order: &[usize], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(items.len());
    if threads <= 1 {
        return items.iter().map(f).collect();
    }
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<R>>> = Mutex::new(items.iter().map(|_| None).collect());
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                while let Some(&i) = order.get(next.fetch_add(1, Ordering::Relaxed)) {
                    let r = f(&items[i]);
                    if let Ok(mut all) = results.lock() {
                        all[i] = Some(r);
                    }
                }
            });
        }
    });
    results
        .into_inner()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .into_iter()
        .flatten()
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn results_keep_the_input_order() {
        let items: Vec<u64> = (0..100).collect();
        let out = super::map(&items, |x| x * x);
        assert_eq!(out, items.iter().map(|x| x * x).collect::<Vec<_>>());
        assert!(super::map(&[] as &[u64], |x| *x).is_empty());
    }

    #[test]
    fn costliest_first_orders_by_cost_and_keeps_the_input_order_of_results() {
        assert_eq!(
            super::costliest_first(&[1.0, 5.0, 0.0, 5.0, 2.0]),
            vec![1, 3, 4, 0, 2]
        );
        let items: Vec<u64> = (0..50).collect();
        let out = super::map_costliest_first(&items, |&x| (x % 7) as f64, |&x| x + 1);
        assert_eq!(out, items.iter().map(|x| x + 1).collect::<Vec<_>>());
    }
}
