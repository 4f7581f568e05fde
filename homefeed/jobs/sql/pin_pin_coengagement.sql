-- Pairs of pins engaged (clicked or saved) by the same user on day :dt; users = how many users
-- engaged both. Each user contributes at most :max_pins_per_user pins (their first engagements
-- of the day), so at most n(n-1)/2 pairs per user: heavy users cannot explode the join.
WITH eng AS (
    SELECT user_id, pin_id, event_time FROM click WHERE dt = :dt
    UNION ALL SELECT user_id, pin_id, event_time FROM save WHERE dt = :dt
),
firsts AS (
    SELECT user_id, pin_id, MIN(event_time) AS first_time FROM eng GROUP BY user_id, pin_id
),
capped AS (
    SELECT user_id, pin_id
    FROM (
        SELECT
            user_id, pin_id,
            ROW_NUMBER() OVER (PARTITION BY user_id ORDER BY first_time, pin_id) AS rn
        FROM firsts
    ) AS ranked
    WHERE rn <= :max_pins_per_user
)
SELECT a.pin_id AS pin_a, b.pin_id AS pin_b, COUNT(*) AS users
FROM capped AS a
JOIN capped AS b ON a.user_id = b.user_id AND a.pin_id < b.pin_id
GROUP BY a.pin_id, b.pin_id
ORDER BY pin_a, pin_b
