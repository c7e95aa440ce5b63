-- At most one rotation of a secret is under way at a time: a second start is refused (409).
CREATE UNIQUE INDEX rotations_one_under_way ON rotations (vault_id, secret_name)
    WHERE status IN ('pending', 'awaiting_approval', 'running');
