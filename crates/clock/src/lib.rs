//! Time as people read it: the configured time zone (summer time included), local times
//! with their offset, durations in two units in zh-CN or en, and the schedules reports run on.

pub mod schedule;
pub mod window;
pub mod zone;

pub use schedule::{Every, Schedule};
pub use window::{BusinessHours, Window};
pub use zone::{duration, Zone};
