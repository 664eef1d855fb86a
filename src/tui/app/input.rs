//! Dialogs (rate prompt, model picker, remove confirmation): opening them, and the keys while one is
//! open; and the mouse: the parts of input that do not go through the keymap.

use ratatui::crossterm::event::{KeyCode, KeyEvent, MouseEvent, MouseEventKind};
use ratatui::layout::Rect;

use super::{App, MAX_CONCURRENCY, MAX_RATE, Mode, Outgoing};
use crate::tui::fleet::TableRow;
use crate::tui::keymap::Action;
use crate::vocab::command::Command;
use crate::vocab::fleet::FleetView;
use crate::vocab::snapshot::{NoticeLevel, Snapshot, TenantId};
use crate::vocab::spec::{Arrival, InputData, Load, Sla, TenantSpec};

impl App {
    pub(super) fn open_rate_prompt(&mut self, snap: &Snapshot) -> Option<Outgoing> {
        let t = self.selected_tenant(snap)?;
        self.mode = Mode::TypingRate {
            tenant: t.id,
            buffer: String::new(),
            error: None,
        };
        None
    }

    /// The picker lists the target's repository, so without one there is nothing to pick from.
    pub(super) fn open_picker(&mut self, snap: &Snapshot) -> Option<Outgoing> {
        if snap.repository.is_empty() {
            self.say(
                snap,
                NoticeLevel::Warn,
                "the target's model repository is empty or not listed yet",
            );
        } else {
            self.mode = Mode::Picker { index: 0 };
        }
        None
    }

    /// Removing a tenant unloads its model, so it is asked for twice.
    pub(super) fn confirm_remove(&mut self, snap: &Snapshot) -> Option<Outgoing> {
        let t = self.selected_tenant(snap)?;
        self.mode = Mode::ConfirmRemove {
            tenant: t.id,
            model: t.model.clone(),
        };
        None
    }

    pub(super) fn typing(
        &mut self,
        event: &KeyEvent,
        tenant: TenantId,
        mut buffer: String,
        snap: &Snapshot,
    ) -> Option<Outgoing> {
        match event.code {
            KeyCode::Esc => {
                self.mode = Mode::Normal;
                None
            }
            KeyCode::Backspace => {
                buffer.pop();
                self.mode = Mode::TypingRate {
                    tenant,
                    buffer,
                    error: None,
                };
                None
            }
            KeyCode::Char(c) if c.is_ascii_digit() || c == '.' => {
                if buffer.len() < 12 {
                    buffer.push(c);
                }
                self.mode = Mode::TypingRate {
                    tenant,
                    buffer,
                    error: None,
                };
                None
            }
            KeyCode::Enter => {
                let Some(t) = snap.tenants.iter().find(|t| t.id == tenant) else {
                    self.mode = Mode::Normal;
                    self.say(snap, NoticeLevel::Warn, "that tenant is gone");
                    return None;
                };
                match parse_exact(&t.load, &buffer) {
                    Ok(load) => {
                        self.mode = Mode::Normal;
                        self.set_load(snap, t.id, load)
                    }
                    Err(error) => {
                        self.mode = Mode::TypingRate {
                            tenant,
                            buffer,
                            error: Some(error),
                        };
                        None
                    }
                }
            }
            _ => None,
        }
    }

    pub(super) fn picking(
        &mut self,
        event: &KeyEvent,
        index: usize,
        snap: &Snapshot,
    ) -> Option<Outgoing> {
        let last = snap.repository.len().saturating_sub(1);
        match event.code {
            KeyCode::Esc | KeyCode::Char('q') => self.mode = Mode::Normal,
            KeyCode::Up | KeyCode::Char('k') => {
                self.mode = Mode::Picker {
                    index: index.saturating_sub(1),
                }
            }
            KeyCode::Down | KeyCode::Char('j') => {
                self.mode = Mode::Picker {
                    index: (index + 1).min(last),
                }
            }
            KeyCode::Enter => {
                self.mode = Mode::Normal;
                let model = snap.repository.get(index)?;
                if model.fits == Some(false) {
                    self.say(
                        snap,
                        NoticeLevel::Warn,
                        format!(
                            "{} may not fit the free GPU memory; asking anyway",
                            model.name
                        ),
                    );
                }
                return Some(Outgoing::Live(Command::AddTenant(Box::new(
                    default_tenant(&model.name),
                ))));
            }
            _ => {}
        }
        None
    }

    /// As [`App::mouse`] for a fleet's grouped table, whose `table` rows include a header per
    /// target: a click on a tenant's row selects it, one on a header does nothing.
    pub fn mouse_in_fleet(
        &mut self,
        event: &MouseEvent,
        rows: Rect,
        offset: usize,
        fleet: &FleetView,
        table: &[TableRow],
        snap: &Snapshot,
    ) -> Option<Outgoing> {
        let clicked = matches!(event.kind, MouseEventKind::Down(_))
            && self.mode == Mode::Normal
            && event.column >= rows.x
            && event.column < rows.x + rows.width
            && event.row >= rows.y
            && event.row < rows.y + rows.height;
        if !clicked {
            return self.mouse(event, None, offset, snap);
        }
        let row = table.get(offset + usize::from(event.row - rows.y));
        if let Some(id) = row.and_then(|r| crate::tui::fleet::row_tenant(fleet, *r)) {
            self.selected = Some(id);
        }
        None
    }

    /// Mouse: a click on a tenant row selects it; the wheel changes the selected tenant's rate.
    /// `rows` is where the table's data rows are drawn and `offset` the first tenant shown there.
    pub fn mouse(
        &mut self,
        event: &MouseEvent,
        rows: Option<Rect>,
        offset: usize,
        snap: &Snapshot,
    ) -> Option<Outgoing> {
        if self.mode != Mode::Normal {
            return None;
        }
        match event.kind {
            MouseEventKind::Down(_) => {
                let rows = rows?;
                let inside = event.column >= rows.x
                    && event.column < rows.x + rows.width
                    && event.row >= rows.y
                    && event.row < rows.y + rows.height;
                if inside {
                    let i = offset + usize::from(event.row - rows.y);
                    if let Some(t) = snap.tenants.get(i) {
                        self.selected = Some(t.id);
                    }
                }
                None
            }
            MouseEventKind::ScrollUp if !self.replay => self.action(Action::RateUp, snap),
            MouseEventKind::ScrollDown if !self.replay => self.action(Action::RateDown, snap),
            _ => None,
        }
    }
}

/// Parses what the user typed into a load of the same kind as the tenant's.
fn parse_exact(current: &Load, typed: &str) -> Result<Load, String> {
    let typed = typed.trim();
    if typed.is_empty() {
        return Err("type a number, or Esc to cancel".to_string());
    }
    match current {
        Load::Rate { arrival, .. } => match typed.parse::<f64>() {
            Ok(r) if r > 0.0 && r <= MAX_RATE => Ok(Load::Rate {
                per_s: r,
                arrival: arrival.clone(),
            }),
            Ok(_) => Err(format!(
                "rate must be above 0 and at most {MAX_RATE:.0} req/s"
            )),
            Err(_) => Err(format!("`{typed}` is not a number")),
        },
        Load::Concurrency(_) => match typed.parse::<u32>() {
            Ok(n) if (1..=MAX_CONCURRENCY).contains(&n) => Ok(Load::Concurrency(n)),
            Ok(_) => Err(format!("concurrency must be 1 to {MAX_CONCURRENCY}")),
            Err(_) => Err(format!(
                "`{typed}` is not a whole number of requests in flight"
            )),
        },
    }
}

/// What `a` adds: a modest open-loop tenant the user then tunes live.
pub fn default_tenant(model: &str) -> TenantSpec {
    TenantSpec {
        model: model.to_string(),
        load: Load::Rate {
            per_s: 10.0,
            arrival: Arrival::Poisson,
        },
        batch: 1,
        sla: Sla {
            latency_ms: 100.0,
            percentile: 95.0,
        },
        instances: None,
        dynamic_batching: None,
        data: InputData::Zero,
        max_in_flight: TenantSpec::DEFAULT_MAX_IN_FLIGHT,
        deadline: TenantSpec::DEFAULT_DEADLINE,
        inputs: Vec::new(),
    }
}
