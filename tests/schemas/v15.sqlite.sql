CREATE TABLE crm_accounts (
	tenant VARCHAR(64) NOT NULL, 
	id CHAR(32) NOT NULL, 
	version INTEGER NOT NULL, 
	created_at VARCHAR(26) NOT NULL, 
	updated_at VARCHAR(26) NOT NULL, 
	name TEXT NOT NULL, 
	domain TEXT, 
	country TEXT, 
	industry TEXT, 
	employees BIGINT, 
	annual_revenue VARCHAR(40), 
	annual_revenue_currency CHAR(3), 
	annual_revenue_units BIGINT, 
	annual_revenue_nanos BIGINT, 
	owner TEXT, 
	tags TEXT NOT NULL, 
	tags_fold TEXT, 
	custom TEXT NOT NULL, 
	custom_fold TEXT, 
	PRIMARY KEY (tenant, id)
);

CREATE INDEX ix_crm_accounts_domain ON crm_accounts (tenant, domain);

CREATE INDEX ix_crm_accounts_created_at ON crm_accounts (tenant, created_at);

CREATE TABLE crm_segments (
	tenant VARCHAR(64) NOT NULL, 
	id CHAR(32) NOT NULL, 
	version INTEGER NOT NULL, 
	created_at VARCHAR(26) NOT NULL, 
	updated_at VARCHAR(26) NOT NULL, 
	name TEXT NOT NULL, 
	kind VARCHAR(32) NOT NULL, 
	rule TEXT, 
	description TEXT, 
	PRIMARY KEY (tenant, id)
);

CREATE INDEX ix_crm_segments_name ON crm_segments (tenant, name);

CREATE TABLE crm_stage_changes (
	tenant VARCHAR(64) NOT NULL, 
	id CHAR(32) NOT NULL, 
	version INTEGER NOT NULL, 
	created_at VARCHAR(26) NOT NULL, 
	updated_at VARCHAR(26) NOT NULL, 
	subject VARCHAR(32) NOT NULL, 
	subject_id CHAR(32) NOT NULL, 
	pipeline TEXT, 
	from_stage TEXT, 
	to_stage TEXT NOT NULL, 
	at VARCHAR(26) NOT NULL, 
	"by" TEXT, 
	reason TEXT, 
	amount VARCHAR(40), 
	amount_currency CHAR(3), 
	amount_units BIGINT, 
	amount_nanos BIGINT, 
	probability VARCHAR(40), 
	probability_units BIGINT, 
	probability_nanos BIGINT, 
	expected_close DATE, 
	PRIMARY KEY (tenant, id)
);

CREATE INDEX ix_crm_stage_changes_subject_subject_id_at_id_pipeline_c80274e3 ON crm_stage_changes (tenant, subject, subject_id, at, id, pipeline, from_stage, to_stage);

CREATE TABLE crm_suppressions (
	tenant VARCHAR(64) NOT NULL, 
	id CHAR(32) NOT NULL, 
	version INTEGER NOT NULL, 
	created_at VARCHAR(26) NOT NULL, 
	updated_at VARCHAR(26) NOT NULL, 
	kind TEXT NOT NULL, 
	digest TEXT NOT NULL, 
	erasure_id CHAR(32), 
	PRIMARY KEY (tenant, id)
);

CREATE TABLE crm_erasures (
	tenant VARCHAR(64) NOT NULL, 
	id CHAR(32) NOT NULL, 
	version INTEGER NOT NULL, 
	created_at VARCHAR(26) NOT NULL, 
	updated_at VARCHAR(26) NOT NULL, 
	contact_id CHAR(32) NOT NULL, 
	"by" TEXT NOT NULL, 
	reason TEXT NOT NULL, 
	at VARCHAR(26) NOT NULL, 
	approved_by TEXT, 
	records BIGINT NOT NULL, 
	PRIMARY KEY (tenant, id)
);

CREATE TABLE crm_audit_entries (
	tenant VARCHAR(64) NOT NULL, 
	id CHAR(32) NOT NULL, 
	version INTEGER NOT NULL, 
	created_at VARCHAR(26) NOT NULL, 
	updated_at VARCHAR(26) NOT NULL, 
	subject VARCHAR(32) NOT NULL, 
	subject_id CHAR(32) NOT NULL, 
	action VARCHAR(32) NOT NULL, 
	at VARCHAR(26) NOT NULL, 
	field TEXT, 
	"before" TEXT, 
	"after" TEXT, 
	"by" TEXT, 
	PRIMARY KEY (tenant, id)
);

CREATE INDEX ix_crm_audit_entries_subject_subject_id_at_id ON crm_audit_entries (tenant, subject, subject_id, at, id);

CREATE TABLE crm_meta (
	"key" VARCHAR(64) NOT NULL, 
	value TEXT NOT NULL, 
	PRIMARY KEY ("key")
);

CREATE TABLE crm_merges (
	tenant VARCHAR(64) NOT NULL, 
	id CHAR(32) NOT NULL, 
	kind VARCHAR(32) NOT NULL, 
	survivor_id CHAR(32) NOT NULL, 
	at VARCHAR(26) NOT NULL, 
	body TEXT NOT NULL, 
	PRIMARY KEY (tenant, id)
);

CREATE TABLE crm_match_keys (
	tenant VARCHAR(64) NOT NULL, 
	entity VARCHAR(32) NOT NULL, 
	"key" VARCHAR(64) NOT NULL, 
	value TEXT NOT NULL, 
	subject_id CHAR(32) NOT NULL, 
	PRIMARY KEY (tenant, entity, "key", value, subject_id)
);

CREATE INDEX ix_crm_match_keys_subject_id ON crm_match_keys (tenant, subject_id);

CREATE TABLE crm_outbox (
	tenant VARCHAR(64) NOT NULL, 
	position BIGINT NOT NULL, 
	id CHAR(32) NOT NULL, 
	type VARCHAR(64) NOT NULL, 
	subject VARCHAR(32) NOT NULL, 
	subject_id CHAR(32) NOT NULL, 
	occurred_at VARCHAR(26) NOT NULL, 
	caused_by CHAR(32), 
	body TEXT NOT NULL, 
	lane SMALLINT NOT NULL, 
	PRIMARY KEY (tenant, position)
);

CREATE INDEX ix_crm_outbox_subject_id_position ON crm_outbox (tenant, subject_id, position);

CREATE UNIQUE INDEX ux_crm_outbox_id ON crm_outbox (tenant, id);

CREATE INDEX ix_crm_outbox_lane_position ON crm_outbox (tenant, lane, position);

CREATE TABLE crm_outbox_deliveries (
	tenant VARCHAR(64) NOT NULL, 
	handler VARCHAR(200) NOT NULL, 
	position BIGINT NOT NULL, 
	event_id CHAR(32) NOT NULL, 
	event_type VARCHAR(64) NOT NULL, 
	subject_id CHAR(32) NOT NULL, 
	status VARCHAR(16) NOT NULL, 
	attempts INTEGER NOT NULL, 
	next_at VARCHAR(26), 
	claim CHAR(32), 
	leased_until VARCHAR(26), 
	error TEXT, 
	finished_at VARCHAR(26), 
	PRIMARY KEY (tenant, position, handler)
);

CREATE INDEX ix_crm_outbox_deliveries_dead_position ON crm_outbox_deliveries (tenant, position) WHERE status = 'dead';

CREATE INDEX ix_crm_outbox_deliveries_handler_subject_id_position ON crm_outbox_deliveries (tenant, handler, subject_id, position) WHERE status = 'pending';

CREATE INDEX ix_crm_outbox_deliveries_pending_position ON crm_outbox_deliveries (tenant, position) WHERE status = 'pending';

CREATE TABLE crm_outbox_lanes (
	tenant VARCHAR(64) NOT NULL, 
	handler VARCHAR(200) NOT NULL, 
	lane SMALLINT NOT NULL, 
	position BIGINT NOT NULL, 
	claim CHAR(32), 
	leased_until VARCHAR(26), 
	PRIMARY KEY (tenant, handler, lane)
);

CREATE TABLE crm_steps (
	tenant VARCHAR(64) NOT NULL, 
	id CHAR(32) NOT NULL, 
	kind VARCHAR(100) NOT NULL, 
	payload TEXT NOT NULL, 
	due_at VARCHAR(26) NOT NULL, 
	created_at VARCHAR(26) NOT NULL, 
	subject VARCHAR(32), 
	subject_id CHAR(32), 
	attempts INTEGER NOT NULL, 
	status VARCHAR(16) NOT NULL, 
	lease CHAR(32), 
	leased_until VARCHAR(26), 
	last_error TEXT, 
	finished_at VARCHAR(26), 
	PRIMARY KEY (tenant, id)
);

CREATE INDEX ix_crm_steps_status_due_at_id ON crm_steps (tenant, status, due_at, id);

CREATE TABLE crm_consent_states (
	tenant VARCHAR(64) NOT NULL, 
	contact_id CHAR(32) NOT NULL, 
	channel VARCHAR(32) NOT NULL, 
	purpose TEXT NOT NULL, 
	status VARCHAR(32) NOT NULL, 
	expires_at VARCHAR(26), 
	contact_point TEXT, 
	consent_id CHAR(32) NOT NULL, 
	decided_at VARCHAR(26) NOT NULL, 
	PRIMARY KEY (tenant, contact_id, channel, purpose)
)
 WITHOUT ROWID;

CREATE TABLE crm_contacts (
	tenant VARCHAR(64) NOT NULL, 
	id CHAR(32) NOT NULL, 
	version INTEGER NOT NULL, 
	created_at VARCHAR(26) NOT NULL, 
	updated_at VARCHAR(26) NOT NULL, 
	first_name TEXT, 
	first_name_fold TEXT, 
	last_name TEXT, 
	last_name_fold TEXT, 
	email TEXT, 
	email_fold TEXT, 
	phone TEXT, 
	country TEXT, 
	language TEXT, 
	account_id CHAR(32), 
	lifecycle_stage VARCHAR(32) NOT NULL, 
	owner TEXT, 
	owner_fold TEXT, 
	do_not_contact BOOLEAN NOT NULL, 
	tags TEXT NOT NULL, 
	tags_fold TEXT, 
	custom TEXT NOT NULL, 
	custom_fold TEXT, 
	PRIMARY KEY (tenant, id), 
	CONSTRAINT fk_crm_contacts_account_id FOREIGN KEY(tenant, account_id) REFERENCES crm_accounts (tenant, id)
);

CREATE INDEX ix_crm_contacts_country ON crm_contacts (tenant, country);

CREATE INDEX ix_crm_contacts_phone_created_at_id ON crm_contacts (tenant, phone, created_at, id);

CREATE INDEX ix_crm_contacts_lifecycle_stage ON crm_contacts (tenant, lifecycle_stage);

CREATE INDEX ix_crm_contacts_created_at ON crm_contacts (tenant, created_at);

CREATE INDEX ix_crm_contacts_email_created_at_id ON crm_contacts (tenant, email, created_at, id);

CREATE INDEX ix_crm_contacts_account_id_created_at_id ON crm_contacts (tenant, account_id, created_at, id);

CREATE TABLE crm_segment_members (
	tenant VARCHAR(64) NOT NULL, 
	segment_id CHAR(32) NOT NULL, 
	member_id CHAR(32) NOT NULL, 
	PRIMARY KEY (tenant, segment_id, member_id), 
	FOREIGN KEY(tenant, segment_id) REFERENCES crm_segments (tenant, id) ON DELETE CASCADE
);

CREATE TABLE crm_merge_keys (
	tenant VARCHAR(64) NOT NULL, 
	"key" TEXT NOT NULL, 
	merge_id CHAR(32) NOT NULL, 
	PRIMARY KEY (tenant, "key", merge_id), 
	FOREIGN KEY(tenant, merge_id) REFERENCES crm_merges (tenant, id) ON DELETE CASCADE
);

CREATE TABLE crm_leads (
	tenant VARCHAR(64) NOT NULL, 
	id CHAR(32) NOT NULL, 
	version INTEGER NOT NULL, 
	created_at VARCHAR(26) NOT NULL, 
	updated_at VARCHAR(26) NOT NULL, 
	contact_id CHAR(32) NOT NULL, 
	source TEXT NOT NULL, 
	source_fold TEXT, 
	channel VARCHAR(32) NOT NULL, 
	status VARCHAR(32) NOT NULL, 
	score DOUBLE, 
	owner TEXT, 
	owner_fold TEXT, 
	pipeline TEXT, 
	pipeline_fold TEXT, 
	stage TEXT, 
	stage_fold TEXT, 
	disqualified_reason TEXT, 
	deal_id CHAR(32), 
	custom TEXT NOT NULL, 
	custom_fold TEXT, 
	PRIMARY KEY (tenant, id), 
	CONSTRAINT fk_crm_leads_contact_id FOREIGN KEY(tenant, contact_id) REFERENCES crm_contacts (tenant, id), 
	CONSTRAINT fk_crm_leads_deal_id FOREIGN KEY(tenant, deal_id) REFERENCES crm_deals (tenant, id)
);

CREATE INDEX ix_crm_leads_status_score ON crm_leads (tenant, status, score);

CREATE INDEX ix_crm_leads_deal_id ON crm_leads (tenant, deal_id) WHERE deal_id IS NOT NULL;

CREATE INDEX ix_crm_leads_contact_id_created_at_id ON crm_leads (tenant, contact_id, created_at, id);

CREATE INDEX ix_crm_leads_score ON crm_leads (tenant, score);

CREATE INDEX ix_crm_leads_created_at ON crm_leads (tenant, created_at);

CREATE TABLE crm_tickets (
	tenant VARCHAR(64) NOT NULL, 
	id CHAR(32) NOT NULL, 
	version INTEGER NOT NULL, 
	created_at VARCHAR(26) NOT NULL, 
	updated_at VARCHAR(26) NOT NULL, 
	subject TEXT NOT NULL, 
	subject_fold TEXT, 
	contact_id CHAR(32) NOT NULL, 
	channel VARCHAR(32) NOT NULL, 
	status VARCHAR(32) NOT NULL, 
	priority VARCHAR(32) NOT NULL, 
	description TEXT, 
	account_id CHAR(32), 
	assignee TEXT, 
	assignee_fold TEXT, 
	csat BIGINT, 
	tags TEXT NOT NULL, 
	tags_fold TEXT, 
	custom TEXT NOT NULL, 
	custom_fold TEXT, 
	PRIMARY KEY (tenant, id), 
	CONSTRAINT fk_crm_tickets_contact_id FOREIGN KEY(tenant, contact_id) REFERENCES crm_contacts (tenant, id), 
	CONSTRAINT fk_crm_tickets_account_id FOREIGN KEY(tenant, account_id) REFERENCES crm_accounts (tenant, id)
);

CREATE INDEX ix_crm_tickets_status_priority ON crm_tickets (tenant, status, priority);

CREATE INDEX ix_crm_tickets_created_at ON crm_tickets (tenant, created_at);

CREATE INDEX ix_crm_tickets_contact_id_created_at_id ON crm_tickets (tenant, contact_id, created_at, id);

CREATE INDEX ix_crm_tickets_account_id ON crm_tickets (tenant, account_id) WHERE account_id IS NOT NULL;

CREATE TABLE crm_consents (
	tenant VARCHAR(64) NOT NULL, 
	id CHAR(32) NOT NULL, 
	version INTEGER NOT NULL, 
	created_at VARCHAR(26) NOT NULL, 
	updated_at VARCHAR(26) NOT NULL, 
	contact_id CHAR(32) NOT NULL, 
	channel VARCHAR(32) NOT NULL, 
	purpose TEXT NOT NULL, 
	status VARCHAR(32) NOT NULL, 
	source TEXT NOT NULL, 
	decided_at VARCHAR(26) NOT NULL, 
	expires_at VARCHAR(26), 
	legal_basis VARCHAR(32) NOT NULL, 
	contact_point TEXT, 
	evidence_form TEXT, 
	evidence_text TEXT, 
	evidence_ip TEXT, 
	PRIMARY KEY (tenant, id), 
	CONSTRAINT fk_crm_consents_contact_id FOREIGN KEY(tenant, contact_id) REFERENCES crm_contacts (tenant, id)
);

CREATE INDEX ix_crm_consents_contact_id_channel_purpose_decided_at__802fa42f ON crm_consents (tenant, contact_id, channel, purpose, decided_at, id, status, expires_at, contact_point);

CREATE TABLE crm_do_not_contact (
	tenant VARCHAR(64) NOT NULL, 
	id CHAR(32) NOT NULL, 
	version INTEGER NOT NULL, 
	created_at VARCHAR(26) NOT NULL, 
	updated_at VARCHAR(26) NOT NULL, 
	contact_id CHAR(32) NOT NULL, 
	channel VARCHAR(32) NOT NULL, 
	reason VARCHAR(32) NOT NULL, 
	source TEXT NOT NULL, 
	decided_at VARCHAR(26) NOT NULL, 
	lifted BOOLEAN NOT NULL, 
	PRIMARY KEY (tenant, id), 
	CONSTRAINT fk_crm_do_not_contact_contact_id FOREIGN KEY(tenant, contact_id) REFERENCES crm_contacts (tenant, id)
);

CREATE INDEX ix_crm_do_not_contact_contact_id_channel_decided_at_id_lifted ON crm_do_not_contact (tenant, contact_id, channel, decided_at, id, lifted);

CREATE TABLE crm_deals (
	tenant VARCHAR(64) NOT NULL, 
	id CHAR(32) NOT NULL, 
	version INTEGER NOT NULL, 
	created_at VARCHAR(26) NOT NULL, 
	updated_at VARCHAR(26) NOT NULL, 
	title TEXT NOT NULL, 
	title_fold TEXT, 
	pipeline TEXT NOT NULL, 
	pipeline_fold TEXT, 
	stage TEXT NOT NULL, 
	stage_fold TEXT, 
	amount VARCHAR(40), 
	amount_currency CHAR(3), 
	amount_units BIGINT, 
	amount_nanos BIGINT, 
	probability VARCHAR(40) NOT NULL, 
	probability_units BIGINT NOT NULL, 
	probability_nanos BIGINT NOT NULL, 
	probability_manual BOOLEAN NOT NULL, 
	status VARCHAR(32) NOT NULL, 
	contact_id CHAR(32), 
	account_id CHAR(32), 
	lead_id CHAR(32), 
	expected_close DATE, 
	closed_at VARCHAR(26), 
	lost_reason TEXT, 
	lost_reason_fold TEXT, 
	owner TEXT, 
	owner_fold TEXT, 
	tags TEXT NOT NULL, 
	tags_fold TEXT, 
	custom TEXT NOT NULL, 
	custom_fold TEXT, 
	forecast_category VARCHAR(32), 
	PRIMARY KEY (tenant, id), 
	CONSTRAINT fk_crm_deals_contact_id FOREIGN KEY(tenant, contact_id) REFERENCES crm_contacts (tenant, id), 
	CONSTRAINT fk_crm_deals_account_id FOREIGN KEY(tenant, account_id) REFERENCES crm_accounts (tenant, id), 
	CONSTRAINT fk_crm_deals_lead_id FOREIGN KEY(tenant, lead_id) REFERENCES crm_leads (tenant, id)
);

CREATE INDEX ix_crm_deals_pipeline_stage ON crm_deals (tenant, pipeline, stage);

CREATE INDEX ix_crm_deals_status ON crm_deals (tenant, status);

CREATE INDEX ix_crm_deals_contact_id_created_at_id ON crm_deals (tenant, contact_id, created_at, id);

CREATE INDEX ix_crm_deals_lead_id ON crm_deals (tenant, lead_id) WHERE lead_id IS NOT NULL;

CREATE INDEX ix_crm_deals_account_id_created_at_id ON crm_deals (tenant, account_id, created_at, id);

CREATE INDEX ix_crm_deals_created_at ON crm_deals (tenant, created_at);

CREATE TABLE crm_activities (
	tenant VARCHAR(64) NOT NULL, 
	id CHAR(32) NOT NULL, 
	version INTEGER NOT NULL, 
	created_at VARCHAR(26) NOT NULL, 
	updated_at VARCHAR(26) NOT NULL, 
	contact_id CHAR(32) NOT NULL, 
	kind VARCHAR(32) NOT NULL, 
	occurred_at VARCHAR(26) NOT NULL, 
	subject TEXT, 
	subject_fold TEXT, 
	body TEXT, 
	amount VARCHAR(40), 
	amount_currency CHAR(3), 
	amount_units BIGINT, 
	amount_nanos BIGINT, 
	properties TEXT NOT NULL, 
	properties_fold TEXT, 
	deal_id CHAR(32), 
	ticket_id CHAR(32), 
	actor TEXT, 
	actor_fold TEXT, 
	PRIMARY KEY (tenant, id), 
	CONSTRAINT fk_crm_activities_contact_id FOREIGN KEY(tenant, contact_id) REFERENCES crm_contacts (tenant, id), 
	CONSTRAINT fk_crm_activities_deal_id FOREIGN KEY(tenant, deal_id) REFERENCES crm_deals (tenant, id), 
	CONSTRAINT fk_crm_activities_ticket_id FOREIGN KEY(tenant, ticket_id) REFERENCES crm_tickets (tenant, id)
);

CREATE INDEX ix_crm_activities_contact_id_kind_occurred_at ON crm_activities (tenant, contact_id, kind, occurred_at);

CREATE INDEX ix_crm_activities_kind_occurred_at ON crm_activities (tenant, kind, occurred_at);

CREATE INDEX ix_crm_activities_contact_id_occurred_at_id ON crm_activities (tenant, contact_id, occurred_at, id);

CREATE INDEX ix_crm_activities_ticket_id ON crm_activities (tenant, ticket_id) WHERE ticket_id IS NOT NULL;

CREATE INDEX ix_crm_activities_occurred_at ON crm_activities (tenant, occurred_at);

CREATE INDEX ix_crm_activities_deal_id ON crm_activities (tenant, deal_id) WHERE deal_id IS NOT NULL;

CREATE TABLE crm_tasks (
	tenant VARCHAR(64) NOT NULL, 
	id CHAR(32) NOT NULL, 
	version INTEGER NOT NULL, 
	created_at VARCHAR(26) NOT NULL, 
	updated_at VARCHAR(26) NOT NULL, 
	title TEXT NOT NULL, 
	due_at VARCHAR(26) NOT NULL, 
	kind VARCHAR(32) NOT NULL, 
	status VARCHAR(32) NOT NULL, 
	assignee TEXT, 
	contact_id CHAR(32), 
	deal_id CHAR(32), 
	ticket_id CHAR(32), 
	remind_at VARCHAR(26), 
	completed_at VARCHAR(26), 
	notes TEXT, 
	PRIMARY KEY (tenant, id), 
	CONSTRAINT fk_crm_tasks_contact_id FOREIGN KEY(tenant, contact_id) REFERENCES crm_contacts (tenant, id), 
	CONSTRAINT fk_crm_tasks_deal_id FOREIGN KEY(tenant, deal_id) REFERENCES crm_deals (tenant, id), 
	CONSTRAINT fk_crm_tasks_ticket_id FOREIGN KEY(tenant, ticket_id) REFERENCES crm_tickets (tenant, id)
);

CREATE INDEX ix_crm_tasks_status_due_at_id ON crm_tasks (tenant, status, due_at, id);

CREATE INDEX ix_crm_tasks_ticket_id ON crm_tasks (tenant, ticket_id) WHERE ticket_id IS NOT NULL;

CREATE INDEX ix_crm_tasks_contact_id_due_at_id ON crm_tasks (tenant, contact_id, due_at, id);

CREATE INDEX ix_crm_tasks_deal_id ON crm_tasks (tenant, deal_id) WHERE deal_id IS NOT NULL;

CREATE INDEX ix_crm_tasks_assignee_status_due_at_id ON crm_tasks (tenant, assignee, status, due_at, id);

CREATE UNIQUE INDEX ux_crm_contacts_email_key ON crm_contacts (tenant, coalesce(email_fold, email));

INSERT INTO crm_meta (key, value) VALUES ('schema_version', '15');

INSERT INTO crm_meta (key, value) VALUES ('email_identity', 'unique');
