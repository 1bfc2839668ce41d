-- How a route is travelled (issue 15.3): on foot, by bicycle, by an academy shuttle or a bus. The
-- monitor gives each mode its speeds (a child going faster than its route's mode is not on it), so a
-- registered shuttle ride along a road zone raises nothing, while the same ride on a walking route is
-- one "left route".
ALTER TABLE routes
    ADD COLUMN mode text NOT NULL DEFAULT 'walk' CHECK (mode IN ('walk', 'bicycle', 'shuttle', 'bus'));
