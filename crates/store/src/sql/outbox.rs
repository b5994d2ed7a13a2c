//! Change-notification subscriptions and the durable outboxes of notifications and e-mail.

use super::tx::*;

impl SubscriptionRead for SqlTx<'_> {
    fn subscription(&mut self, id: &str) -> Result<Option<Subscription>> {
        self.one(
            &format!("SELECT {SUBSCRIPTION_COLS} FROM subscriptions s WHERE s.id = ?"),
            &params![id],
            subscription_row,
        )
    }
    fn subscriptions(&mut self) -> Result<Vec<Subscription>> {
        self.many(
            &format!("SELECT {SUBSCRIPTION_COLS} FROM subscriptions s ORDER BY s.created_at, s.id"),
            &[],
            subscription_row,
        )
    }
}

impl SubscriptionWrite for SqlTx<'_> {
    fn insert_subscription(&mut self, s: &Subscription) -> Result<()> {
        self.exec(
            "INSERT INTO subscriptions (id, resource, entity, resource_id, change_types, notification_url, \
             client_state, expires_at, creator_id, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            &params![
                s.id,
                s.resource,
                s.entity.as_str(),
                s.resource_id,
                s.change_type_list(),
                s.notification_url,
                s.client_state,
                us(s.expires_at),
                s.creator_id,
                us(s.created_at)
            ],
        )?;
        Ok(())
    }
    fn renew_subscription(&mut self, id: &str, expires_at: Timestamp) -> Result<()> {
        self.exec(
            "UPDATE subscriptions SET expires_at = ? WHERE id = ?",
            &params![us(expires_at), id],
        )?;
        Ok(())
    }
    fn delete_subscription(&mut self, id: &str) -> Result<()> {
        self.exec(
            "DELETE FROM notification_outbox WHERE subscription_id = ?",
            &params![id],
        )?;
        self.exec("DELETE FROM subscriptions WHERE id = ?", &params![id])?;
        Ok(())
    }
}

impl Outbox for SqlTx<'_> {
    fn enqueue_notifications(
        &mut self,
        entity: NotifiedEntity,
        id: &str,
        change: ChangeType,
        resource_id: &str,
        now: Timestamp,
    ) -> Result<()> {
        let uuid = match self.c.dialect() {
            Dialect::Sqlite => {
                "lower(hex(randomblob(4)) || '-' || hex(randomblob(2)) || '-4' || substr(hex(randomblob(2)), 2) \
                 || '-' || hex(randomblob(2)) || '-' || hex(randomblob(6)))"
            }
            Dialect::Postgres => "gen_random_uuid()::text",
        };
        self.exec(
            &format!("INSERT INTO notification_outbox (id, subscription_id, entity, entity_id, change_type, first_due, due_at) \
             SELECT {uuid}, s.id, ?1, ?2, ?3, ?4, ?4 \
             FROM subscriptions s \
             WHERE s.entity = ?1 AND s.expires_at > ?4 \
               AND instr(',' || s.change_types || ',', ',' || ?3 || ',') > 0 \
               AND (s.resource_id IS NULL OR s.resource_id IN \
                    (SELECT ancestor_id FROM resource_ancestors WHERE resource_id = ?5))"),
            &params![entity.as_str(), id, change.as_str(), us(now), resource_id],
        )?;
        Ok(())
    }
    fn claim_deliveries(
        &mut self,
        owner: &str,
        now: Timestamp,
        lease_until: Timestamp,
        limit: u32,
    ) -> Result<Vec<Delivery>> {
        self.exec(
            "DELETE FROM notification_outbox WHERE due_at <= ?1 AND subscription_id IN \
             (SELECT id FROM subscriptions WHERE expires_at <= ?1)",
            &params![us(now)],
        )?;
        // The guard (`due_at <= now`) is repeated outside the subquery: a row another
        // node leased in between has its `due_at` moved to its lease's end.
        self.exec(
            "UPDATE notification_outbox SET lease_owner = ?1, lease_until = ?2, due_at = ?2 \
             WHERE rowid IN (SELECT rowid FROM notification_outbox WHERE due_at <= ?3 \
                             ORDER BY due_at, rowid LIMIT ?4) \
               AND due_at <= ?3",
            &params![owner, us(lease_until), us(now), i64::from(limit)],
        )?;
        self.many(
            &format!(
                "SELECT {SUBSCRIPTION_COLS}, o.id, o.entity, o.entity_id, o.change_type, o.first_due, o.attempts \
                 FROM notification_outbox o JOIN subscriptions s ON s.id = o.subscription_id \
                 WHERE o.due_at = ?2 AND o.lease_owner = ?1 ORDER BY o.first_due, o.rowid"
            ),
            &params![owner, us(lease_until)],
            delivery_row,
        )
    }
    fn finish_delivery(&mut self, id: &str, owner: &str) -> Result<bool> {
        let n = self.exec(
            "DELETE FROM notification_outbox WHERE id = ? AND lease_owner = ?",
            &params![id, owner],
        )?;
        Ok(n == 1)
    }
    fn retry_delivery(&mut self, id: &str, owner: &str, at: Timestamp) -> Result<bool> {
        let n = self.exec(
            "UPDATE notification_outbox SET attempts = attempts + 1, due_at = ?3, \
             lease_owner = NULL, lease_until = 0 WHERE id = ?1 AND lease_owner = ?2",
            &params![id, owner, us(at)],
        )?;
        Ok(n == 1)
    }
    fn enqueue_email(&mut self, e: &rolegate_core::email::Email) -> Result<()> {
        self.exec(
            "INSERT INTO email_outbox (id, request_id, event, recipient_id, address, first_due, due_at, assignment_id) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6, ?7)",
            &params![
                e.id,
                e.request_id,
                e.event.as_str(),
                e.recipient_id,
                e.address,
                us(e.first_due),
                e.assignment_id
            ],
        )?;
        Ok(())
    }
    fn claim_emails(
        &mut self,
        owner: &str,
        now: Timestamp,
        lease_until: Timestamp,
        limit: u32,
    ) -> Result<Vec<rolegate_core::email::Email>> {
        // As for change notifications: the guard is repeated outside the subquery.
        self.exec(
            "UPDATE email_outbox SET lease_owner = ?1, lease_until = ?2, due_at = ?2 \
             WHERE rowid IN (SELECT rowid FROM email_outbox WHERE due_at <= ?3 \
                             ORDER BY due_at, rowid LIMIT ?4) \
               AND due_at <= ?3",
            &params![owner, us(lease_until), us(now), i64::from(limit)],
        )?;
        self.many(
            "SELECT id, request_id, event, recipient_id, address, first_due, attempts, assignment_id \
             FROM email_outbox WHERE due_at = ?2 AND lease_owner = ?1 ORDER BY first_due, rowid",
            &params![owner, us(lease_until)],
            email_row,
        )
    }
    fn finish_email(&mut self, id: &str, owner: &str) -> Result<bool> {
        let n = self.exec(
            "DELETE FROM email_outbox WHERE id = ? AND lease_owner = ?",
            &params![id, owner],
        )?;
        Ok(n == 1)
    }
    fn retry_email(&mut self, id: &str, owner: &str, at: Timestamp) -> Result<bool> {
        let n = self.exec(
            "UPDATE email_outbox SET attempts = attempts + 1, due_at = ?3, \
             lease_owner = NULL, lease_until = 0 WHERE id = ?1 AND lease_owner = ?2",
            &params![id, owner, us(at)],
        )?;
        Ok(n == 1)
    }
}

#[cfg(test)]
mod outbox_tests {
    use super::*;

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + s).unwrap_or(Timestamp::UNIX_EPOCH)
    }

    /// Leases are exclusive until they run out; only the holder acknowledges or retries;
    /// retries wait; rows of expired subscriptions are dropped.
    #[test]
    fn outbox_rows_are_leased_to_one_worker_at_a_time() -> Result<()> {
        crate::sql::with_memory_tx(|mut tx| {
            let sub = Subscription {
                id: "s1".into(),
                resource: "privilegedAccess/azureResources/roleAssignments".into(),
                entity: NotifiedEntity::Assignment,
                resource_id: None,
                change_types: vec![ChangeType::Created],
                notification_url: "https://example.com/hook".into(),
                client_state: "k".into(),
                expires_at: at(1000),
                creator_id: "admin".into(),
                created_at: at(0),
            };
            tx.insert_subscription(&sub)?;
            tx.enqueue_notifications(
                NotifiedEntity::Assignment,
                "a1",
                ChangeType::Created,
                "r",
                at(1),
            )?;
            // Not wanted: another change type, another entity.
            tx.enqueue_notifications(
                NotifiedEntity::Assignment,
                "a1",
                ChangeType::Updated,
                "r",
                at(1),
            )?;
            tx.enqueue_notifications(
                NotifiedEntity::Request,
                "q1",
                ChangeType::Created,
                "r",
                at(1),
            )?;
            let got = tx.claim_deliveries("A", at(1), at(61), 10)?;
            assert_eq!(got.len(), 1);
            assert_eq!(got[0].entity_id, "a1");
            assert_eq!(got[0].subscription, sub);
            assert!(tx.claim_deliveries("B", at(2), at(62), 10)?.is_empty());
            // A's lease ran out: B takes the row, and A can no longer settle it.
            let again = tx.claim_deliveries("B", at(61), at(121), 10)?;
            assert_eq!(again.len(), 1);
            assert!(!tx.finish_delivery(&got[0].id, "A")?);
            assert!(tx.retry_delivery(&got[0].id, "B", at(70))?);
            assert!(tx.claim_deliveries("A", at(69), at(129), 10)?.is_empty());
            let retried = tx.claim_deliveries("A", at(70), at(130), 10)?;
            assert_eq!(retried.len(), 1);
            assert_eq!(retried[0].attempts, 1);
            assert_eq!(retried[0].first_due, at(1));
            assert!(tx.finish_delivery(&retried[0].id, "A")?);
            assert!(tx.claim_deliveries("A", at(999), at(1999), 10)?.is_empty());
            // A row of a subscription that has expired is dropped, not delivered.
            tx.enqueue_notifications(
                NotifiedEntity::Assignment,
                "a2",
                ChangeType::Created,
                "r",
                at(5),
            )?;
            assert!(tx.claim_deliveries("A", at(1000), at(1060), 10)?.is_empty());
            tx.renew_subscription("s1", at(5000))?;
            assert!(tx.claim_deliveries("A", at(1000), at(1060), 10)?.is_empty());
            Ok(())
        })
    }
}

#[cfg(test)]
mod email_outbox_tests {
    use super::*;
    use crate::sqlite::{SqliteConnection, db};
    use rolegate_core::email::{Email, Event};
    use rusqlite::Connection;

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + s).unwrap_or(Timestamp::UNIX_EPOCH)
    }

    /// E-mail rows are leased to one worker at a time; only the holder settles them; a
    /// retried row waits for its time and counts the attempt.
    #[test]
    fn email_rows_are_leased_to_one_worker_at_a_time() -> Result<()> {
        crate::sql::with_memory_tx(|mut tx| {
            let mail = Email {
                id: "e1".into(),
                request_id: "r1".into(),
                assignment_id: None,
                event: Event::ApprovalNeeded,
                recipient_id: "u1".into(),
                address: "bob@example.com".into(),
                first_due: at(1),
                attempts: 0,
            };
            tx.enqueue_email(&mail)?;
            assert!(tx.claim_emails("A", at(0), at(60), 10)?.is_empty());
            let got = tx.claim_emails("A", at(1), at(61), 10)?;
            assert_eq!(got, vec![mail.clone()]);
            assert!(tx.claim_emails("B", at(2), at(62), 10)?.is_empty());
            assert!(!tx.finish_email("e1", "B")?);
            assert!(tx.retry_email("e1", "A", at(70))?);
            assert!(tx.claim_emails("B", at(69), at(129), 10)?.is_empty());
            let retried = tx.claim_emails("B", at(70), at(130), 10)?;
            assert_eq!(retried.len(), 1);
            assert_eq!(retried[0].attempts, 1);
            assert_eq!(retried[0].first_due, at(1));
            assert!(tx.finish_email("e1", "B")?);
            assert!(tx.claim_emails("A", at(999), at(1999), 10)?.is_empty());
            Ok(())
        })
    }

    #[test]
    fn a_reminder_is_claimed_once_per_assignment_threshold_and_end() -> Result<()> {
        let c = Connection::open_in_memory().map_err(db)?;
        crate::sqlite::migrate(&c)?;
        let conn = SqliteConnection(&c);
        let mut tx = SqlTx::new(&conn);
        assert!(tx.claim_reminder("a1", "P1D", at(100), at(10))?);
        assert!(!tx.claim_reminder("a1", "P1D", at(100), at(11))?);
        // Another threshold, another end (an extension), another assignment: new keys.
        assert!(tx.claim_reminder("a1", "P14D", at(100), at(10))?);
        assert!(tx.claim_reminder("a1", "P1D", at(200), at(12))?);
        assert!(tx.claim_reminder("a2", "P1D", at(100), at(10))?);
        // Ends that have passed are forgotten; later ones are kept.
        tx.forget_reminders_ending_by(at(100))?;
        assert!(!tx.claim_reminder("a1", "P1D", at(200), at(101))?);
        let left: i64 = c
            .query_row("SELECT count(*) FROM reminders_sent", [], |r| r.get(0))
            .map_err(db)?;
        assert_eq!(left, 1);
        Ok(())
    }
}
