/* The sysfs files meltrig reads as device telemetry, as glob patterns relative to the sysfs root:
 * one list for the host side (targets/src/sysfs_telemetry.cpp, local target) and the device-side
 * probe (targets/tools/meltrig_probe.c, ssh and adb targets). Plain C99, no dependencies. */
#ifndef MELTRIG_TARGETS_SYSFS_PATTERNS_H
#define MELTRIG_TARGETS_SYSFS_PATTERNS_H

static const char* const meltrig_sysfs_patterns[] = {
    "class/thermal/thermal_zone*/type",
    "class/thermal/thermal_zone*/temp",
    "devices/system/cpu/cpu*/cpufreq/scaling_cur_freq",
    "class/devfreq/*/cur_freq",
    "class/power_supply/*/current_now",
    "class/power_supply/*/voltage_now",
    "class/hwmon/hwmon*/name",
    "class/hwmon/hwmon*/in*_label",
    "class/hwmon/hwmon*/in*_input",
    "class/hwmon/hwmon*/curr*_input",
    "bus/i2c/drivers/ina3221x/*/iio:device*/rail_name_*",
    "bus/i2c/drivers/ina3221x/*/iio:device*/in_power*_input",
    "bus/i2c/drivers/ina3221x/*/iio:device*/in_current*_input",
    "bus/i2c/drivers/ina3221x/*/iio:device*/in_voltage*_input",
};

#endif
