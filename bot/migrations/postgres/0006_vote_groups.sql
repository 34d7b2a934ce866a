-- The groups each approver held when voting (a JSON array of subjects, like
-- approvals.requester_groups), so an approval is checked against the policy in force when it
-- runs: a reload that took an approver's role away voids their vote. Votes from before this
-- migration have no groups recorded: their approvers count by their own subject alone.
ALTER TABLE approval_votes ADD COLUMN approver_groups TEXT NOT NULL DEFAULT '[]';
