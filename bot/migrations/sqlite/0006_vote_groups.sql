-- The groups each approver held when voting (a JSON array of subjects, like
-- approvals.requester_groups), so an approval is checked against the policy in force when it
-- runs: a reload that took an approver's role away voids their vote. NULL for votes from
-- before this column: what groups they came with is not known, so they are not re-checked.
ALTER TABLE approval_votes ADD COLUMN approver_groups TEXT;
