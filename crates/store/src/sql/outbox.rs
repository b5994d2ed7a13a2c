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
