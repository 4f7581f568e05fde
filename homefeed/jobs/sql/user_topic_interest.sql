-- Time-decayed interest of each user in each topic as of the end of day :dt (:day_end).
-- Cumulative: yesterday's profile (view prev_user_topic_interest, empty on the first day)
-- decayed by one day, plus today's clicks, closeups and saves, each weighted by action and
-- decayed by its age at the end of the day: w * 0.5 ^ (age_days / :half_life_days). Equal to
-- recomputing over all history, without rereading it. A pin's topics are those of its latest
-- pin_create up to the end of the day. Weights below :min_weight are dropped to bound growth.
WITH pin_topics AS (
    SELECT pin_id, topics
    FROM (
        SELECT
            pin_id, topics,
            ROW_NUMBER() OVER (
                PARTITION BY pin_id ORDER BY event_time DESC, _partition DESC, _offset DESC
            ) AS rn
        FROM pin_create
        WHERE dt <= :dt
    ) AS ranked
    WHERE rn = 1
),
topic_of AS (
    SELECT pin_id, UNNEST(topics) AS topic FROM pin_topics
),
acts AS (
    SELECT user_id, pin_id, event_time, :w_click AS w FROM click WHERE dt = :dt
    UNION ALL SELECT user_id, pin_id, event_time, :w_closeup AS w FROM closeup WHERE dt = :dt
    UNION ALL SELECT user_id, pin_id, event_time, :w_save AS w FROM save WHERE dt = :dt
),
today AS (
    SELECT
        a.user_id, t.topic,
        SUM(
            a.w * POWER(
                0.5,
                DATE_DIFF('millisecond', a.event_time, CAST(:day_end AS TIMESTAMPTZ))
                / (86400000.0 * :half_life_days)
            )
        ) AS weight
    FROM acts AS a
    JOIN topic_of AS t ON t.pin_id = a.pin_id
    GROUP BY a.user_id, t.topic
),
carried AS (
    SELECT user_id, topic, weight * POWER(0.5, 1.0 / :half_life_days) AS weight
    FROM prev_user_topic_interest
),
combined AS (
    SELECT user_id, topic, weight FROM today
    UNION ALL SELECT user_id, topic, weight FROM carried
)
SELECT user_id, topic, SUM(weight) AS weight
FROM combined
GROUP BY user_id, topic
HAVING SUM(weight) >= :min_weight
ORDER BY user_id, topic
