-- The propeller's snapshots: the state of one partition of the executions topic as of `next_offset` (the
-- first record not folded into it), written by the owner of epoch `epoch`. Recovery restores the newest and
-- replays the records from `next_offset`.
CREATE TABLE propeller_snapshots (
    topic TEXT NOT NULL,
    log_partition BIGINT NOT NULL,
    next_offset BIGINT NOT NULL,
    epoch BIGINT NOT NULL,
    state_json TEXT NOT NULL,
    taken_at BIGINT NOT NULL,
    PRIMARY KEY (topic, log_partition)
)
