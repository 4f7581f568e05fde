-- Current follows as of the end of day :dt. Cumulative: yesterday's snapshot (view
-- prev_follow_graph, empty on the first day) updated by today's events; the latest event of
-- the day per (user, target) wins (ties by log position), and an unfollow removes the edge.
WITH today AS (
    SELECT user_id, target_type, target_id, action, event_time
    FROM (
        SELECT
            user_id, target_type, target_id, action, event_time,
            ROW_NUMBER() OVER (
                PARTITION BY user_id, target_type, target_id
                ORDER BY event_time DESC, _partition DESC, _offset DESC
            ) AS rn
        FROM follow
        WHERE dt = :dt
    ) AS ranked
    WHERE rn = 1
),
kept AS (
    SELECT p.user_id, p.target_type, p.target_id, p.followed_at
    FROM prev_follow_graph AS p
    LEFT JOIN today AS t
        ON t.user_id = p.user_id AND t.target_type = p.target_type
        AND t.target_id = p.target_id
    WHERE t.user_id IS NULL
)
SELECT user_id, target_type, target_id, followed_at FROM kept
UNION ALL
SELECT user_id, target_type, target_id, event_time AS followed_at
FROM today
WHERE action = 'follow'
ORDER BY user_id, target_type, target_id
