CREATE TABLE crm_accounts (
	tenant VARCHAR(64) COLLATE "C" NOT NULL, 
	id UUID NOT NULL, 
	version INTEGER NOT NULL, 
	created_at TIMESTAMP WITH TIME ZONE NOT NULL, 
	updated_at TIMESTAMP WITH TIME ZONE NOT NULL, 
	name TEXT COLLATE "C" NOT NULL, 
	domain TEXT COLLATE "C", 
	country TEXT COLLATE "C", 
	industry TEXT COLLATE "C", 
	employees BIGINT, 
	annual_revenue VARCHAR(40), 
	annual_revenue_currency CHAR(3), 
	annual_revenue_units BIGINT, 
	annual_revenue_nanos BIGINT, 
	owner TEXT COLLATE "C", 
	tags JSONB NOT NULL, 
	tags_fold JSONB, 
	custom JSON NOT NULL, 
	custom_fold JSON, 
	PRIMARY KEY (tenant, id)
);

CREATE INDEX ix_crm_accounts_created_at ON crm_accounts (tenant, created_at);

CREATE INDEX ix_crm_accounts_domain ON crm_accounts (tenant, domain);

CREATE TABLE crm_segments (
	tenant VARCHAR(64) COLLATE "C" NOT NULL, 
	id UUID NOT NULL, 
	version INTEGER NOT NULL, 
	created_at TIMESTAMP WITH TIME ZONE NOT NULL, 
	updated_at TIMESTAMP WITH TIME ZONE NOT NULL, 
	name TEXT COLLATE "C" NOT NULL, 
	kind VARCHAR(32) COLLATE "C" NOT NULL, 
	rule JSON, 
	description TEXT COLLATE "C", 
	PRIMARY KEY (tenant, id)
);

CREATE INDEX ix_crm_segments_name ON crm_segments (tenant, name);

CREATE TABLE crm_stage_changes (
	tenant VARCHAR(64) COLLATE "C" NOT NULL, 
	id UUID NOT NULL, 
	version INTEGER NOT NULL, 
	created_at TIMESTAMP WITH TIME ZONE NOT NULL, 
	updated_at TIMESTAMP WITH TIME ZONE NOT NULL, 
	subject VARCHAR(32) COLLATE "C" NOT NULL, 
	subject_id UUID NOT NULL, 
	pipeline TEXT COLLATE "C", 
	from_stage TEXT COLLATE "C", 
	to_stage TEXT COLLATE "C" NOT NULL, 
	at TIMESTAMP WITH TIME ZONE NOT NULL, 
	by TEXT COLLATE "C", 
	reason TEXT COLLATE "C", 
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

CREATE INDEX ix_crm_stage_changes_subject_subject_id_at_id_pipeline_c80274e3 ON crm_stage_changes (tenant, subject, subject_id, at, id, pipeline, from_stage, to_stage) INCLUDE (reason, amount_currency, amount_units, amount_nanos, expected_close);

CREATE TABLE crm_suppressions (
	tenant VARCHAR(64) COLLATE "C" NOT NULL, 
	id UUID NOT NULL, 
	version INTEGER NOT NULL, 
	created_at TIMESTAMP WITH TIME ZONE NOT NULL, 
	updated_at TIMESTAMP WITH TIME ZONE NOT NULL, 
	kind TEXT COLLATE "C" NOT NULL, 
	digest TEXT COLLATE "C" NOT NULL, 
	erasure_id UUID, 
	PRIMARY KEY (tenant, id)
);

CREATE TABLE crm_erasures (
	tenant VARCHAR(64) COLLATE "C" NOT NULL, 
	id UUID NOT NULL, 
	version INTEGER NOT NULL, 
	created_at TIMESTAMP WITH TIME ZONE NOT NULL, 
	updated_at TIMESTAMP WITH TIME ZONE NOT NULL, 
	contact_id UUID NOT NULL, 
	by TEXT COLLATE "C" NOT NULL, 
	reason TEXT COLLATE "C" NOT NULL, 
	at TIMESTAMP WITH TIME ZONE NOT NULL, 
	approved_by TEXT COLLATE "C", 
	records BIGINT NOT NULL, 
	PRIMARY KEY (tenant, id)
);

CREATE TABLE crm_audit_entries (
	tenant VARCHAR(64) COLLATE "C" NOT NULL, 
	id UUID NOT NULL, 
	version INTEGER NOT NULL, 
	created_at TIMESTAMP WITH TIME ZONE NOT NULL, 
	updated_at TIMESTAMP WITH TIME ZONE NOT NULL, 
	subject VARCHAR(32) COLLATE "C" NOT NULL, 
	subject_id UUID NOT NULL, 
	action VARCHAR(32) COLLATE "C" NOT NULL, 
	at TIMESTAMP WITH TIME ZONE NOT NULL, 
	field TEXT COLLATE "C", 
	before TEXT COLLATE "C", 
	after TEXT COLLATE "C", 
	by TEXT COLLATE "C", 
	PRIMARY KEY (tenant, id)
);

CREATE INDEX ix_crm_audit_entries_subject_subject_id_at_id ON crm_audit_entries (tenant, subject, subject_id, at, id);

CREATE TABLE crm_meta (
	key VARCHAR(64) COLLATE "C" NOT NULL, 
	value TEXT COLLATE "C" NOT NULL, 
	PRIMARY KEY (key)
);

CREATE TABLE crm_merges (
	tenant VARCHAR(64) COLLATE "C" NOT NULL, 
	id UUID NOT NULL, 
	kind VARCHAR(32) COLLATE "C" NOT NULL, 
	survivor_id UUID NOT NULL, 
	at TIMESTAMP WITH TIME ZONE NOT NULL, 
	body TEXT NOT NULL, 
	PRIMARY KEY (tenant, id)
);

CREATE TABLE crm_match_keys (
	tenant VARCHAR(64) COLLATE "C" NOT NULL, 
	entity VARCHAR(32) COLLATE "C" NOT NULL, 
	key VARCHAR(64) COLLATE "C" NOT NULL, 
	value TEXT COLLATE "C" NOT NULL, 
	subject_id UUID NOT NULL, 
	PRIMARY KEY (tenant, entity, key, value, subject_id)
);

CREATE INDEX ix_crm_match_keys_subject_id ON crm_match_keys (tenant, subject_id);

CREATE TABLE crm_outbox (
	tenant VARCHAR(64) COLLATE "C" NOT NULL, 
	position BIGINT NOT NULL, 
	id UUID NOT NULL, 
	type VARCHAR(64) COLLATE "C" NOT NULL, 
	subject VARCHAR(32) COLLATE "C" NOT NULL, 
	subject_id UUID NOT NULL, 
	occurred_at TIMESTAMP WITH TIME ZONE NOT NULL, 
	caused_by UUID, 
	body TEXT NOT NULL, 
	lane SMALLINT NOT NULL, 
	PRIMARY KEY (tenant, position)
);

CREATE UNIQUE INDEX ux_crm_outbox_id ON crm_outbox (tenant, id);

CREATE INDEX ix_crm_outbox_subject_id_position ON crm_outbox (tenant, subject_id, position);

CREATE INDEX ix_crm_outbox_lane_position ON crm_outbox (tenant, lane, position);

CREATE TABLE crm_outbox_deliveries (
	tenant VARCHAR(64) COLLATE "C" NOT NULL, 
	handler VARCHAR(200) COLLATE "C" NOT NULL, 
	position BIGINT NOT NULL, 
	event_id UUID NOT NULL, 
	event_type VARCHAR(64) COLLATE "C" NOT NULL, 
	subject_id UUID NOT NULL, 
	status VARCHAR(16) COLLATE "C" NOT NULL, 
	attempts INTEGER NOT NULL, 
	next_at TIMESTAMP WITH TIME ZONE, 
	claim UUID, 
	leased_until TIMESTAMP WITH TIME ZONE, 
	error TEXT, 
	finished_at TIMESTAMP WITH TIME ZONE, 
	PRIMARY KEY (tenant, position, handler)
);

CREATE INDEX ix_crm_outbox_deliveries_pending_position ON crm_outbox_deliveries (tenant, position) WHERE status = 'pending';

CREATE INDEX ix_crm_outbox_deliveries_handler_subject_id_position ON crm_outbox_deliveries (tenant, handler, subject_id, position) WHERE status = 'pending';

CREATE INDEX ix_crm_outbox_deliveries_dead_position ON crm_outbox_deliveries (tenant, position) WHERE status = 'dead';

CREATE TABLE crm_outbox_lanes (
	tenant VARCHAR(64) COLLATE "C" NOT NULL, 
	handler VARCHAR(200) COLLATE "C" NOT NULL, 
	lane SMALLINT NOT NULL, 
	position BIGINT NOT NULL, 
	claim UUID, 
	leased_until TIMESTAMP WITH TIME ZONE, 
	PRIMARY KEY (tenant, handler, lane)
);

CREATE TABLE crm_steps (
	tenant VARCHAR(64) COLLATE "C" NOT NULL, 
	id UUID NOT NULL, 
	kind VARCHAR(100) COLLATE "C" NOT NULL, 
	payload TEXT NOT NULL, 
	due_at TIMESTAMP WITH TIME ZONE NOT NULL, 
	created_at TIMESTAMP WITH TIME ZONE NOT NULL, 
	subject VARCHAR(32) COLLATE "C", 
	subject_id UUID, 
	attempts INTEGER NOT NULL, 
	status VARCHAR(16) COLLATE "C" NOT NULL, 
	lease UUID, 
	leased_until TIMESTAMP WITH TIME ZONE, 
	last_error TEXT, 
	finished_at TIMESTAMP WITH TIME ZONE, 
	PRIMARY KEY (tenant, id)
);

CREATE INDEX ix_crm_steps_status_due_at_id ON crm_steps (tenant, status, due_at, id);

CREATE TABLE crm_consent_states (
	tenant VARCHAR(64) COLLATE "C" NOT NULL, 
	contact_id UUID NOT NULL, 
	channel VARCHAR(32) COLLATE "C" NOT NULL, 
	purpose TEXT COLLATE "C" NOT NULL, 
	status VARCHAR(32) COLLATE "C" NOT NULL, 
	expires_at TIMESTAMP WITH TIME ZONE, 
	contact_point TEXT COLLATE "C", 
	consent_id UUID NOT NULL, 
	decided_at TIMESTAMP WITH TIME ZONE NOT NULL, 
	PRIMARY KEY (tenant, contact_id, channel, purpose)
);

CREATE TABLE crm_contacts (
	tenant VARCHAR(64) COLLATE "C" NOT NULL, 
	id UUID NOT NULL, 
	version INTEGER NOT NULL, 
	created_at TIMESTAMP WITH TIME ZONE NOT NULL, 
	updated_at TIMESTAMP WITH TIME ZONE NOT NULL, 
	first_name TEXT COLLATE "C", 
	first_name_fold TEXT COLLATE "C", 
	last_name TEXT COLLATE "C", 
	last_name_fold TEXT COLLATE "C", 
	email TEXT COLLATE "C", 
	email_fold TEXT COLLATE "C", 
	phone TEXT COLLATE "C", 
	country TEXT COLLATE "C", 
	language TEXT COLLATE "C", 
	account_id UUID, 
	lifecycle_stage VARCHAR(32) COLLATE "C" NOT NULL, 
	owner TEXT COLLATE "C", 
	owner_fold TEXT COLLATE "C", 
	do_not_contact BOOLEAN NOT NULL, 
	tags JSONB NOT NULL, 
	tags_fold JSONB, 
	custom JSON NOT NULL, 
	custom_fold JSON, 
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
	tenant VARCHAR(64) COLLATE "C" NOT NULL, 
	segment_id UUID NOT NULL, 
	member_id UUID NOT NULL, 
	PRIMARY KEY (tenant, segment_id, member_id), 
	FOREIGN KEY(tenant, segment_id) REFERENCES crm_segments (tenant, id) ON DELETE CASCADE
);

CREATE TABLE crm_merge_keys (
	tenant VARCHAR(64) COLLATE "C" NOT NULL, 
	key TEXT COLLATE "C" NOT NULL, 
	merge_id UUID NOT NULL, 
	PRIMARY KEY (tenant, key, merge_id), 
	FOREIGN KEY(tenant, merge_id) REFERENCES crm_merges (tenant, id) ON DELETE CASCADE
);

CREATE TABLE crm_leads (
	tenant VARCHAR(64) COLLATE "C" NOT NULL, 
	id UUID NOT NULL, 
	version INTEGER NOT NULL, 
	created_at TIMESTAMP WITH TIME ZONE NOT NULL, 
	updated_at TIMESTAMP WITH TIME ZONE NOT NULL, 
	contact_id UUID NOT NULL, 
	source TEXT COLLATE "C" NOT NULL, 
	source_fold TEXT COLLATE "C", 
	channel VARCHAR(32) COLLATE "C" NOT NULL, 
	status VARCHAR(32) COLLATE "C" NOT NULL, 
	score DOUBLE PRECISION, 
	owner TEXT COLLATE "C", 
	owner_fold TEXT COLLATE "C", 
	pipeline TEXT COLLATE "C", 
	pipeline_fold TEXT COLLATE "C", 
	stage TEXT COLLATE "C", 
	stage_fold TEXT COLLATE "C", 
	disqualified_reason TEXT COLLATE "C", 
	deal_id UUID, 
	custom JSON NOT NULL, 
	custom_fold JSON, 
	PRIMARY KEY (tenant, id), 
	CONSTRAINT fk_crm_leads_contact_id FOREIGN KEY(tenant, contact_id) REFERENCES crm_contacts (tenant, id)
);

CREATE INDEX ix_crm_leads_status_score ON crm_leads (tenant, status, score);

CREATE INDEX ix_crm_leads_deal_id ON crm_leads (tenant, deal_id) WHERE deal_id IS NOT NULL;

CREATE INDEX ix_crm_leads_score ON crm_leads (tenant, score);

CREATE INDEX ix_crm_leads_contact_id_created_at_id ON crm_leads (tenant, contact_id, created_at, id);

CREATE INDEX ix_crm_leads_created_at ON crm_leads (tenant, created_at);

CREATE TABLE crm_tickets (
	tenant VARCHAR(64) COLLATE "C" NOT NULL, 
	id UUID NOT NULL, 
	version INTEGER NOT NULL, 
	created_at TIMESTAMP WITH TIME ZONE NOT NULL, 
	updated_at TIMESTAMP WITH TIME ZONE NOT NULL, 
	subject TEXT COLLATE "C" NOT NULL, 
	subject_fold TEXT COLLATE "C", 
	contact_id UUID NOT NULL, 
	channel VARCHAR(32) COLLATE "C" NOT NULL, 
	status VARCHAR(32) COLLATE "C" NOT NULL, 
	priority VARCHAR(32) COLLATE "C" NOT NULL, 
	description TEXT COLLATE "C", 
	account_id UUID, 
	assignee TEXT COLLATE "C", 
	assignee_fold TEXT COLLATE "C", 
	csat BIGINT, 
	tags JSONB NOT NULL, 
	tags_fold JSONB, 
	custom JSON NOT NULL, 
	custom_fold JSON, 
	PRIMARY KEY (tenant, id), 
	CONSTRAINT fk_crm_tickets_contact_id FOREIGN KEY(tenant, contact_id) REFERENCES crm_contacts (tenant, id), 
	CONSTRAINT fk_crm_tickets_account_id FOREIGN KEY(tenant, account_id) REFERENCES crm_accounts (tenant, id)
);

CREATE INDEX ix_crm_tickets_created_at ON crm_tickets (tenant, created_at);

CREATE INDEX ix_crm_tickets_contact_id_created_at_id ON crm_tickets (tenant, contact_id, created_at, id);

CREATE INDEX ix_crm_tickets_account_id ON crm_tickets (tenant, account_id) WHERE account_id IS NOT NULL;

CREATE INDEX ix_crm_tickets_status_priority ON crm_tickets (tenant, status, priority);

CREATE TABLE crm_consents (
	tenant VARCHAR(64) COLLATE "C" NOT NULL, 
	id UUID NOT NULL, 
	version INTEGER NOT NULL, 
	created_at TIMESTAMP WITH TIME ZONE NOT NULL, 
	updated_at TIMESTAMP WITH TIME ZONE NOT NULL, 
	contact_id UUID NOT NULL, 
	channel VARCHAR(32) COLLATE "C" NOT NULL, 
	purpose TEXT COLLATE "C" NOT NULL, 
	status VARCHAR(32) COLLATE "C" NOT NULL, 
	source TEXT COLLATE "C" NOT NULL, 
	decided_at TIMESTAMP WITH TIME ZONE NOT NULL, 
	expires_at TIMESTAMP WITH TIME ZONE, 
	legal_basis VARCHAR(32) COLLATE "C" NOT NULL, 
	contact_point TEXT COLLATE "C", 
	evidence_form TEXT COLLATE "C", 
	evidence_text TEXT COLLATE "C", 
	evidence_ip TEXT COLLATE "C", 
	PRIMARY KEY (tenant, id), 
	CONSTRAINT fk_crm_consents_contact_id FOREIGN KEY(tenant, contact_id) REFERENCES crm_contacts (tenant, id)
);

CREATE INDEX ix_crm_consents_contact_id_channel_purpose_decided_at__802fa42f ON crm_consents (tenant, contact_id, channel, purpose, decided_at, id, status, expires_at, contact_point);

CREATE TABLE crm_do_not_contact (
	tenant VARCHAR(64) COLLATE "C" NOT NULL, 
	id UUID NOT NULL, 
	version INTEGER NOT NULL, 
	created_at TIMESTAMP WITH TIME ZONE NOT NULL, 
	updated_at TIMESTAMP WITH TIME ZONE NOT NULL, 
	contact_id UUID NOT NULL, 
	channel VARCHAR(32) COLLATE "C" NOT NULL, 
	reason VARCHAR(32) COLLATE "C" NOT NULL, 
	source TEXT COLLATE "C" NOT NULL, 
	decided_at TIMESTAMP WITH TIME ZONE NOT NULL, 
	lifted BOOLEAN NOT NULL, 
	PRIMARY KEY (tenant, id), 
	CONSTRAINT fk_crm_do_not_contact_contact_id FOREIGN KEY(tenant, contact_id) REFERENCES crm_contacts (tenant, id)
);

CREATE INDEX ix_crm_do_not_contact_contact_id_channel_decided_at_id_lifted ON crm_do_not_contact (tenant, contact_id, channel, decided_at, id, lifted);

CREATE TABLE crm_deals (
	tenant VARCHAR(64) COLLATE "C" NOT NULL, 
	id UUID NOT NULL, 
	version INTEGER NOT NULL, 
	created_at TIMESTAMP WITH TIME ZONE NOT NULL, 
	updated_at TIMESTAMP WITH TIME ZONE NOT NULL, 
	title TEXT COLLATE "C" NOT NULL, 
	title_fold TEXT COLLATE "C", 
	pipeline TEXT COLLATE "C" NOT NULL, 
	pipeline_fold TEXT COLLATE "C", 
	stage TEXT COLLATE "C" NOT NULL, 
	stage_fold TEXT COLLATE "C", 
	amount VARCHAR(40), 
	amount_currency CHAR(3), 
	amount_units BIGINT, 
	amount_nanos BIGINT, 
	probability VARCHAR(40) NOT NULL, 
	probability_units BIGINT NOT NULL, 
	probability_nanos BIGINT NOT NULL, 
	probability_manual BOOLEAN NOT NULL, 
	status VARCHAR(32) COLLATE "C" NOT NULL, 
	contact_id UUID, 
	account_id UUID, 
	lead_id UUID, 
	expected_close DATE, 
	closed_at TIMESTAMP WITH TIME ZONE, 
	lost_reason TEXT COLLATE "C", 
	lost_reason_fold TEXT COLLATE "C", 
	owner TEXT COLLATE "C", 
	owner_fold TEXT COLLATE "C", 
	tags JSONB NOT NULL, 
	tags_fold JSONB, 
	custom JSON NOT NULL, 
	custom_fold JSON, 
	forecast_category VARCHAR(32) COLLATE "C", 
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
	tenant VARCHAR(64) COLLATE "C" NOT NULL, 
	id UUID NOT NULL, 
	version INTEGER NOT NULL, 
	created_at TIMESTAMP WITH TIME ZONE NOT NULL, 
	updated_at TIMESTAMP WITH TIME ZONE NOT NULL, 
	contact_id UUID NOT NULL, 
	kind VARCHAR(32) COLLATE "C" NOT NULL, 
	occurred_at TIMESTAMP WITH TIME ZONE NOT NULL, 
	subject TEXT COLLATE "C", 
	subject_fold TEXT COLLATE "C", 
	body TEXT COLLATE "C", 
	amount VARCHAR(40), 
	amount_currency CHAR(3), 
	amount_units BIGINT, 
	amount_nanos BIGINT, 
	properties JSON NOT NULL, 
	properties_fold JSON, 
	deal_id UUID, 
	ticket_id UUID, 
	actor TEXT COLLATE "C", 
	actor_fold TEXT COLLATE "C", 
	PRIMARY KEY (tenant, id), 
	CONSTRAINT fk_crm_activities_contact_id FOREIGN KEY(tenant, contact_id) REFERENCES crm_contacts (tenant, id), 
	CONSTRAINT fk_crm_activities_deal_id FOREIGN KEY(tenant, deal_id) REFERENCES crm_deals (tenant, id), 
	CONSTRAINT fk_crm_activities_ticket_id FOREIGN KEY(tenant, ticket_id) REFERENCES crm_tickets (tenant, id)
);

CREATE INDEX ix_crm_activities_deal_id ON crm_activities (tenant, deal_id) WHERE deal_id IS NOT NULL;

CREATE INDEX ix_crm_activities_kind_occurred_at ON crm_activities (tenant, kind, occurred_at);

CREATE INDEX ix_crm_activities_contact_id_kind_occurred_at ON crm_activities (tenant, contact_id, kind, occurred_at);

CREATE INDEX ix_crm_activities_contact_id_occurred_at_id ON crm_activities (tenant, contact_id, occurred_at, id);

CREATE INDEX ix_crm_activities_ticket_id ON crm_activities (tenant, ticket_id) WHERE ticket_id IS NOT NULL;

CREATE INDEX ix_crm_activities_occurred_at ON crm_activities (tenant, occurred_at);

CREATE TABLE crm_tasks (
	tenant VARCHAR(64) COLLATE "C" NOT NULL, 
	id UUID NOT NULL, 
	version INTEGER NOT NULL, 
	created_at TIMESTAMP WITH TIME ZONE NOT NULL, 
	updated_at TIMESTAMP WITH TIME ZONE NOT NULL, 
	title TEXT COLLATE "C" NOT NULL, 
	due_at TIMESTAMP WITH TIME ZONE NOT NULL, 
	kind VARCHAR(32) COLLATE "C" NOT NULL, 
	status VARCHAR(32) COLLATE "C" NOT NULL, 
	assignee TEXT COLLATE "C", 
	contact_id UUID, 
	deal_id UUID, 
	ticket_id UUID, 
	remind_at TIMESTAMP WITH TIME ZONE, 
	completed_at TIMESTAMP WITH TIME ZONE, 
	notes TEXT COLLATE "C", 
	PRIMARY KEY (tenant, id), 
	CONSTRAINT fk_crm_tasks_contact_id FOREIGN KEY(tenant, contact_id) REFERENCES crm_contacts (tenant, id), 
	CONSTRAINT fk_crm_tasks_deal_id FOREIGN KEY(tenant, deal_id) REFERENCES crm_deals (tenant, id), 
	CONSTRAINT fk_crm_tasks_ticket_id FOREIGN KEY(tenant, ticket_id) REFERENCES crm_tickets (tenant, id)
);

CREATE INDEX ix_crm_tasks_assignee_status_due_at_id ON crm_tasks (tenant, assignee, status, due_at, id);

CREATE INDEX ix_crm_tasks_contact_id_due_at_id ON crm_tasks (tenant, contact_id, due_at, id);

CREATE INDEX ix_crm_tasks_status_due_at_id ON crm_tasks (tenant, status, due_at, id);

CREATE INDEX ix_crm_tasks_ticket_id ON crm_tasks (tenant, ticket_id) WHERE ticket_id IS NOT NULL;

CREATE INDEX ix_crm_tasks_deal_id ON crm_tasks (tenant, deal_id) WHERE deal_id IS NOT NULL;

ALTER TABLE crm_leads ADD CONSTRAINT fk_crm_leads_deal_id FOREIGN KEY(tenant, deal_id) REFERENCES crm_deals (tenant, id);

CREATE UNIQUE INDEX ux_crm_contacts_email_key ON crm_contacts (tenant, coalesce(email_fold, email));

INSERT INTO crm_meta (key, value) VALUES ('schema_version', '15');

INSERT INTO crm_meta (key, value) VALUES ('email_identity', 'unique');
