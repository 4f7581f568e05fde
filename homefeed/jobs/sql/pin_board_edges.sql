-- Pin -> board edges seen on day :dt: saves into the board, and the pin's creation on it.
-- weight = saves + :create_weight * created (created is 0 or 1).
WITH ev AS (
    SELECT pin_id, board_id, 1 AS is_save, 0 AS is_create FROM save WHERE dt = :dt
    UNION ALL SELECT pin_id, board_id, 0 AS is_save, 1 AS is_create
        FROM pin_create WHERE dt = :dt
),
edges AS (
    SELECT
        pin_id, board_id,
        COUNT(CASE WHEN is_save = 1 THEN 1 END) AS saves,
        MAX(is_create) AS created
    FROM ev
    GROUP BY pin_id, board_id
)
SELECT
    pin_id, board_id, saves, CAST(created AS BIGINT) AS created,
    CAST(saves AS DOUBLE) + :create_weight * created AS weight
FROM edges
ORDER BY pin_id, board_id
