//! `Shaper` for `TcShaper`: a class and its filters per throttle, put on, changed and lifted.

use super::*;

/// The class of throttle `id`.
pub(super) fn class_handle(id: ThrottleId) -> u32 {
    (u32::from(MAJOR) << 16) | u32::from(id)
}

/// tcm_info of a filter: its priority, and its protocol in network byte order.
pub(super) fn filter_info(prio: u32, proto: u16) -> u32 {
    (prio << 16) | u32::from(proto.to_be())
}

impl Shaper for TcShaper {
    fn interface(&self) -> &str {
        &self.interface
    }

    fn apply(&self, id: ThrottleId, rate: u64, conns: &[Conn]) -> Result<(), ShapeError> {
        if id == 0 || id == 0xffff {
            return Err(ShapeError::Netlink {
                interface: self.interface.clone(),
                what: "add a throttle".into(),
                why: format!("{id} is not a usable class number"),
            });
        }
        let (installed, known) = {
            let s = self.lock()?;
            (s.installed, s.classes.get(&id).map(|c| c.rate))
        };
        if !installed {
            self.install_root()?;
            self.lock()?.installed = true;
        }
        match known {
            None => {
                self.set_class(id, rate, true)?;
                self.lock()?.classes.insert(
                    id,
                    Class {
                        rate,
                        filters: BTreeMap::new(),
                    },
                );
            }
            Some(r) if r != rate => {
                self.set_class(id, rate, false)?;
                if let Some(c) = self.lock()?.classes.get_mut(&id) {
                    c.rate = rate;
                }
            }
            Some(_) => {}
        }
        let current: BTreeMap<Conn, u32> = self
            .lock()?
            .classes
            .get(&id)
            .map(|c| c.filters.clone())
            .unwrap_or_default();
        for (conn, handle) in &current {
            if !conns.contains(conn) {
                self.delete_filter(conn, *handle)?;
                if let Some(c) = self.lock()?.classes.get_mut(&id) {
                    c.filters.remove(conn);
                }
            }
        }
        for conn in conns {
            if current.contains_key(conn) {
                continue;
            }
            let handle = self.add_filter(id, conn)?;
            if let Some(c) = self.lock()?.classes.get_mut(&id) {
                c.filters.insert(*conn, handle);
            }
        }
        Ok(())
    }

    fn release(&self, id: ThrottleId) -> Result<(), ShapeError> {
        let class = self.lock()?.classes.remove(&id);
        if let Some(class) = class {
            for (conn, handle) in &class.filters {
                self.delete_filter(conn, *handle)?;
            }
            self.delete_class(id)?;
        }
        let (empty, installed) = {
            let s = self.lock()?;
            (s.classes.is_empty(), s.installed)
        };
        if empty && installed {
            self.delete_root()?;
            self.lock()?.installed = false;
        }
        Ok(())
    }

    fn release_all(&self) -> Result<(), ShapeError> {
        let installed = {
            let mut s = self.lock()?;
            s.classes.clear();
            std::mem::replace(&mut s.installed, false)
        };
        if installed {
            // Deleting the root takes its classes and filters with it.
            self.delete_root()?;
        }
        Ok(())
    }
}
