-- A propeller may append several events of one execution as one record (`Envelope.then`), so an event's
-- place in the log is its record's offset and its index within the record. The table is rebuilt: SQLite
-- cannot change a primary key in place.
CREATE TABLE execution_events_indexed (
    log_partition BIGINT NOT NULL,
    log_offset BIGINT NOT NULL,
    log_index BIGINT NOT NULL,
    project TEXT NOT NULL,
    domain TEXT NOT NULL,
    execution TEXT NOT NULL,
    stream TEXT NOT NULL,
    seq BIGINT NOT NULL,
    writer_epoch BIGINT NOT NULL,
    occurred_at BIGINT NOT NULL,
    kind TEXT NOT NULL,
    payload_json TEXT NOT NULL,
    PRIMARY KEY (log_partition, log_offset, log_index)
)
;
INSERT INTO execution_events_indexed (log_partition, log_offset, log_index, project, domain, execution, stream, seq,
    writer_epoch, occurred_at, kind, payload_json)
SELECT log_partition, log_offset, 0, project, domain, execution, stream, seq, writer_epoch, occurred_at, kind,
    payload_json FROM execution_events
;
DROP TABLE execution_events
;
ALTER TABLE execution_events_indexed RENAME TO execution_events
;
CREATE INDEX execution_events_by_execution ON execution_events (project, domain, execution, log_partition, log_offset, log_index)
