//! What a packing is worth: the price catalog, cost per million inferences, the dedicated and
//! time-slicing baselines, and the two-tenant co-location frontier (DESIGN §4).

pub mod formulas;
pub mod prices;

pub use formulas::{
    FrontierAxis, HOURS_PER_MONTH, TenantLoad, capacity_figures, cost_view, dedicated_equivalents,
    dedicated_instances, dedicated_usd_per_hour, frontier_view, monthly_usd,
    savings_vs_dedicated_pct, savings_vs_timeslicing_pct, timeslicing_line, timeslicing_y,
    usd_per_million,
};
pub use prices::{CostError, InstancePrice, Prices, ResolvedPrice};
