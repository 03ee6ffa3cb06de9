//! Boxes reused: every segment's event holds its [`Captured`] boxed and every congestion
//! event its [`Congestion`] (hundreds of bytes, which would otherwise make every event that
//! large), and a box per such event was the consumer's most frequent allocation. A box given
//! back when its event is dropped is taken again by the next one decoded on that thread.

use std::cell::RefCell;
use std::fmt;
use std::ops::{Deref, DerefMut};
use std::thread::LocalKey;

use super::{Captured, Congestion};

/// Boxes kept for reuse per type and thread, at most: at 500,000 events a second, the
/// reorder window (30 ms) and a drain's interval hold a few thousand segments; beyond this
/// (3.3 MB of segments), boxes go back to the allocator.
const KEPT: usize = 8192;

/// A type whose boxes are kept for reuse, in a pool of its own per thread.
pub trait Reuse: Sized + 'static {
    /// This thread's spare boxes.
    fn spare() -> &'static LocalKey<RefCell<Vec<Box<Self>>>>;
}

macro_rules! reuse {
    ($t:ty) => {
        impl Reuse for $t {
            fn spare() -> &'static LocalKey<RefCell<Vec<Box<Self>>>> {
                thread_local! {
                    static SPARE: RefCell<Vec<Box<$t>>> = const { RefCell::new(Vec::new()) };
                }
                &SPARE
            }
        }
    };
}

reuse!(Captured);
reuse!(Congestion);

/// A boxed `T` whose box is reused.
pub struct Pooled<T: Reuse>(Option<Box<T>>);

impl<T: Reuse> Pooled<T> {
    /// `value`, in a spare box if this thread has one.
    pub fn new(value: T) -> Self {
        let spare = T::spare().with(|s| s.borrow_mut().pop());
        Self(Some(match spare {
            Some(mut b) => {
                *b = value;
                b
            }
            None => Box::new(value),
        }))
    }
}

impl<T: Reuse> Drop for Pooled<T> {
    fn drop(&mut self) {
        if let Some(b) = self.0.take() {
            // During thread teardown the pool may be gone: the box is then simply freed.
            let _ = T::spare().try_with(|s| {
                let mut spare = s.borrow_mut();
                if spare.len() < KEPT {
                    spare.push(b);
                }
            });
        }
    }
}

impl<T: Reuse> Deref for Pooled<T> {
    type Target = T;

    fn deref(&self) -> &T {
        // Only `drop` takes the box out.
        self.0
            .as_deref()
            .expect("a Pooled holds its box until dropped")
    }
}

impl<T: Reuse> DerefMut for Pooled<T> {
    fn deref_mut(&mut self) -> &mut T {
        self.0
            .as_deref_mut()
            .expect("a Pooled holds its box until dropped")
    }
}

impl<T: Reuse + Clone> Clone for Pooled<T> {
    fn clone(&self) -> Self {
        Self::new((**self).clone())
    }
}

impl<T: Reuse + PartialEq> PartialEq for Pooled<T> {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

impl<T: Reuse + Eq> Eq for Pooled<T> {}

impl<T: Reuse + fmt::Debug> fmt::Debug for Pooled<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dropped_box_is_taken_again_and_holds_the_new_value() {
        let a = Pooled::new(Captured::from_hex("45000028", true, 1));
        let first: *const Captured = &*a;
        drop(a);
        let b = Pooled::new(Captured::from_hex("45000028", false, 2));
        assert_eq!(&*b as *const Captured, first, "the spare box is reused");
        assert!(!b.egress);
        assert_eq!(b.ifindex, 2);
        let c = b.clone();
        assert_eq!(c, b);
        assert_ne!(&*c as *const Captured, first);
    }
}
